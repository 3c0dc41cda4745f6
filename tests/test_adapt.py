"""Adaptation end to end on tiny images: CAwF invariance, packages, import/export, refusals."""

import json
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import load_file, safe_open, save_file

from conftest import smooth_image
from nicodec import container, modelfile, package, registry
from nicodec.adapt import adapt
from nicodec.cli import main
from nicodec.errors import NicodecError


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("target") / "nested"
    d.mkdir()
    for i in range(5):  # a "domain" of striped images, unlike the smooth photo stand-ins
        img = smooth_image(64, 80, seed=i)
        img[:, ::4] = 255 - img[:, ::4]
        Image.fromarray(img).save(d / f"t{i}.png")
    return d.parent


@pytest.fixture()
def cawf_file(env, folder):
    """A tiny CAwF adaptation (K=2, 3 steps, qualities 1 and 3), installed as 'stripes'."""
    res = adapt(folder, name="stripes", k=2, qualities=(1, 3), steps=3, batch=2, crop=64,
                progress=False, log=lambda m: None)
    assert res["path"] == registry.user_adapters_dir() / "stripes.safetensors"
    return res


def test_adapt_runs_end_to_end_and_its_output_decodes(env, cawf_file, folder):
    meta = cawf_file["meta"]
    assert meta.method == "cawf" and meta.k == 2 and sorted(meta.qualities) == [1, 3]
    assert [r["quality"] for r in cawf_file["rows"]] == [1, 3]
    src = folder / "nested" / "t0.png"
    assert run("encode", src, "-o", env / "a.nic", "--domain", "stripes", "-q", 1).exit_code == 0
    header, _ = container.parse((env / "a.nic").read_bytes())
    assert container.format_id(header.adapter_id) == meta.qualities[1].id
    r = run("decode", env / "a.nic", "-o", env / "a.png")
    assert r.exit_code == 0, r.output
    assert Image.open(env / "a.png").size == (80, 64)


def test_cawf_never_changes_the_base_codec(env, folder):
    img = smooth_image(40, 56, seed=9)
    Image.fromarray(img).save(env / "p.png")
    assert run("encode", env / "p.png", "-o", env / "before.nic").exit_code == 0
    assert run("decode", env / "before.nic", "-o", env / "before.png").exit_code == 0
    adapt(folder, name="stripes", k=2, qualities=(3,), steps=3, batch=2, crop=64,
          progress=False, log=lambda m: None)
    assert run("encode", env / "p.png", "-o", env / "after.nic").exit_code == 0
    assert (env / "after.nic").read_bytes() == (env / "before.nic").read_bytes()
    assert run("decode", env / "before.nic", "-o", env / "again.png").exit_code == 0
    assert np.array_equal(np.asarray(Image.open(env / "again.png")),
                          np.asarray(Image.open(env / "before.png")))


def test_export_import_round_trip(env, cawf_file, tmp_path):
    out = tmp_path / "shared.safetensors"
    assert run("models", "export", "stripes", "-o", out).exit_code == 0
    assert run("models", "remove", "stripes").exit_code == 0
    assert "stripes" not in run("models").stdout
    r = run("models", "import", out)
    assert r.exit_code == 0, r.output
    assert "stripes" in run("models").stdout
    again = registry.user_adapters_dir() / "stripes.safetensors"
    assert again.read_bytes() == out.read_bytes()


def _rewrite(src, dst, tensors_fn=None, meta_fn=None):
    tensors = load_file(str(src))
    with safe_open(str(src), "pt") as f:
        meta = dict(f.metadata())
    if tensors_fn:
        tensors = tensors_fn(tensors)
    if meta_fn:
        meta = meta_fn(meta, tensors) if meta_fn.__code__.co_argcount == 2 else meta_fn(meta)
    save_file(tensors, str(dst), metadata=meta)
    return dst


def _set_quality_field(field, value):
    def fn(meta):
        q = json.loads(meta["qualities"])
        q["1"][field] = value
        return dict(meta, qualities=json.dumps(q))
    return fn


def _rehashed(change):
    """A tensor edit that also rewrites quality 1's ID, as a forger would: the check that
    must catch it is then the value check, not the content hash."""
    def tensors_fn(t):
        return change(dict(t))

    def meta_fn(meta, tensors):
        q = json.loads(meta["qualities"])
        q["1"]["id"] = container.format_id(modelfile.content_id(
            package.quality_tensors(tensors, 1)))
        return dict(meta, qualities=json.dumps(q))
    return tensors_fn, meta_fn


def _set(key, index, value):
    def change(t):
        t[key] = t[key].clone()
        t[key].view(-1)[index] = value
        return t
    return change


def _widen_freq(t):
    f = t["q1.tables.freq"]
    t["q1.tables.freq"] = torch.cat([f, torch.zeros(f.shape[0], 65536 - f.shape[1] + 1,
                                                    dtype=f.dtype)], 1)
    return t


def _flip_weight(t):
    t = dict(t)
    t["q1.p.a0_cb"] = t["q1.p.a0_cb"].clone()
    t["q1.p.a0_cb"][0, 0, 0, 0] += 1e-3
    return t


def _rename_key(t):
    t = dict(t)
    t["q1.p.a0_cx"] = t.pop("q1.p.a0_cb")
    return t


@pytest.mark.parametrize("case, needle", [
    ("truncated", "not a nicodec adaptation file"),
    ("garbage", "not a nicodec adaptation file"),
    ("flipped", "content hash does not match"),
    ("renamed_key", "do not match a cawf package"),
    ("other_base", "needs base model 0badc0de"),
    ("wrong_k", "expected"),
    ("bad_tables", "malformed entropy tables"),
    ("qualities_list", "qualities must be a non-empty JSON object"),
    ("quality_not_object", "not a JSON object"),
    ("quality_key", "is not a number"),
    ("id_not_hex", "is not 8 hex digits"),
    ("lambda_text", "is not a positive number"),
    ("k_text", "malformed package metadata"),
    ("step_slope_text", "step_slope 'fast' is not a positive number"),
    ("step_slope_negative", "step_slope -3.0 is not a positive number"),
    ("offset_int32_max", "offsets or lengths out of range"),
    ("median_3e38", "medians beyond"),
    ("weight_3e38", "values beyond"),
    ("rows_65536_wide", "rows of 65537 symbols"),
    ("fifo", "not a regular file"),
])
def test_bad_adapter_files_are_refused(env, cawf_file, tmp_path, case, needle):
    src = cawf_file["path"]
    bad = tmp_path / f"{case}.safetensors"
    if case == "truncated":
        bad.write_bytes(src.read_bytes()[:-1000])
    elif case == "garbage":
        bad.write_bytes(b"\x80\x04\x95 pickle-like junk")
    elif case == "flipped":
        _rewrite(src, bad, tensors_fn=_flip_weight)
    elif case == "renamed_key":
        _rewrite(src, bad, tensors_fn=_rename_key)
    elif case == "other_base":
        _rewrite(src, bad, meta_fn=_set_quality_field("base_id", "0badc0de"))
    elif case == "wrong_k":
        _rewrite(src, bad, meta_fn=lambda m: dict(m, k="3"))
    elif case == "bad_tables":
        def fn(t):
            t = dict(t)
            t["q1.tables.freq"] = t["q1.tables.freq"] * 2
            return t
        _rewrite(src, bad, tensors_fn=fn)
    elif case == "qualities_list":
        _rewrite(src, bad, meta_fn=lambda m: dict(m, qualities="[1, 3]"))
    elif case == "quality_not_object":
        _rewrite(src, bad, meta_fn=lambda m: dict(m, qualities='{"1": "x", "3": {}}'))
    elif case == "quality_key":
        _rewrite(src, bad, meta_fn=lambda m: dict(m, qualities=m["qualities"].replace(
            '"1":', '"one":')))
    elif case == "id_not_hex":
        _rewrite(src, bad, meta_fn=_set_quality_field("id", "../../etc"))
    elif case == "lambda_text":
        _rewrite(src, bad, meta_fn=_set_quality_field("lambda", "0.1; rm"))
    elif case == "step_slope_text":
        _rewrite(src, bad, meta_fn=_set_quality_field("step_slope", "fast"))
    elif case == "step_slope_negative":
        _rewrite(src, bad, meta_fn=_set_quality_field("step_slope", -3.0))
    elif case == "k_text":
        _rewrite(src, bad, meta_fn=lambda m: dict(m, k="two"))
    elif case == "offset_int32_max":
        _rewrite(src, bad, *_rehashed(_set("q1.tables.offset", 0, 2**31 - 1)))
    elif case == "median_3e38":
        _rewrite(src, bad, *_rehashed(_set("q1.tables.median", 0, 3e38)))
    elif case == "weight_3e38":
        _rewrite(src, bad, *_rehashed(_set("q1.p.a0_cb", 0, 3e38)))
    elif case == "rows_65536_wide":
        _rewrite(src, bad, *_rehashed(_widen_freq))
    elif case == "fifo":
        os.mkfifo(bad)
    run("models", "remove", "stripes")
    r = run("models", "import", bad)
    assert r.exit_code == 1 and needle in r.stderr, r.output
    assert "Traceback" not in r.output
    assert not (registry.user_adapters_dir() / "stripes.safetensors").exists()


def test_missing_adapter_names_it_and_says_how_to_import(env, cawf_file, folder):
    src = folder / "nested" / "t1.png"
    assert run("encode", src, "-o", env / "s.nic", "--domain", "stripes").exit_code == 0
    assert run("models", "remove", "stripes").exit_code == 0
    r = run("decode", env / "s.nic")
    aid = cawf_file["meta"].qualities[3].id
    assert r.exit_code == 1 and aid in r.stderr and "models import" in r.stderr


def test_naive_codec_refuses_base_bitstreams_unless_forced(env, folder):
    res = adapt(folder, name="naive1", method="naive", qualities=(3,), steps=3, batch=2,
                crop=64, progress=False, log=lambda m: None)
    nid = res["meta"].qualities[3].id
    img = smooth_image(32, 48, seed=4)
    Image.fromarray(img).save(env / "p.png")
    assert run("encode", env / "p.png", "-o", env / "n.nic", "--domain", "naive1").exit_code == 0
    header, _ = container.parse((env / "n.nic").read_bytes())
    assert container.format_id(header.base_id) == nid and header.adapter_id == 0
    assert run("encode", env / "p.png", "-o", env / "b.nic").exit_code == 0
    r = run("decode", env / "b.nic", "-o", env / "forced.png", "--force-model", nid)
    assert r.exit_code == 0, r.output
    assert run("decode", env / "b.nic", "-o", env / "ok.png").exit_code == 0
    r = run("decode", env / "b.nic", "--force-model", "12345678")
    assert r.exit_code == 1 and "12345678" in r.stderr


def test_selective_tunes_only_about_five_percent(env, folder):
    res = adapt(folder, name="sel", method="selective", qualities=(1,), steps=2, batch=2,
                crop=64, progress=False, log=lambda m: None)
    assert res["meta"].method == "selective"
    from nicodec.adapt import trainable
    from nicodec.network import FactorizedPrior
    net = trainable("selective", FactorizedPrior(), 0)
    tuned = sum(p.numel() for p in net.parameters() if p.requires_grad)
    assert 0.04 < tuned / sum(p.numel() for p in net.parameters()) < 0.06


def test_domain_auto_picks_a_codec_and_says_which(env, cawf_file, folder):
    r = run("encode", folder / "nested" / "t2.png", "-o", env / "auto.nic", "--domain", "auto")
    assert r.exit_code == 0, r.output
    assert "(photo q3)" in r.stderr or "(stripes q3)" in r.stderr
    assert "kept" in r.stderr and "R+lambda*D" in r.stderr


def test_adapt_refuses_too_few_or_unreadable_images(env, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run("adapt", empty, "--name", "x")
    assert r.exit_code == 1 and "found 0 image" in r.stderr
    (empty / "a.png").write_bytes(b"junk")
    (empty / "b.png").write_bytes(b"junk")
    r = run("adapt", empty, "--name", "x")
    assert r.exit_code == 1 and "a.png" in r.stderr
    with pytest.raises(NicodecError):
        package.check_name("photo")


def test_a_diverging_learning_rate_is_one_error_line_and_no_file(env, folder):
    r = run("adapt", folder, "--name", "boom", "--qualities", "1", "--steps", "30",
            "--batch", "2", "--lr", "1e12")
    assert r.exit_code == 1
    assert r.stderr.count("\n") == 1 and "training diverged at step" in r.stderr
    assert "try a lower --lr" in r.stderr and "Traceback" not in r.output
    assert not (registry.user_adapters_dir() / "boom.safetensors").exists()


def test_channel_affine_adapter_round_trips_and_leaves_the_base_alone(env, folder):
    img = smooth_image(40, 56, seed=9)
    Image.fromarray(img).save(env / "p.png")
    assert run("encode", env / "p.png", "-o", env / "before.nic").exit_code == 0
    r = run("adapt", folder, "--name", "scaled", "--custom-filters", 2,  # on by default
            "--qualities", "3", "--steps", 3, "--batch", 2)
    assert r.exit_code == 0, r.output
    assert "channel affine" in r.output
    path = registry.user_adapters_dir() / "scaled.safetensors"
    tensors = load_file(str(path))
    assert any(k.startswith("q3.a_affine.") for k in tensors)
    listing = run("models").output
    assert "cawf K=2 +affine" in listing
    src = folder / "nested" / "t0.png"
    assert run("encode", src, "-o", env / "s.nic", "--domain", "scaled", "-q", 3).exit_code == 0
    r = run("decode", env / "s.nic", "-o", env / "s.png")
    assert r.exit_code == 0, r.output
    assert Image.open(env / "s.png").size == (80, 64)
    assert run("encode", env / "p.png", "-o", env / "after.nic").exit_code == 0
    assert (env / "after.nic").read_bytes() == (env / "before.nic").read_bytes()


def test_channel_affine_is_all_or_nothing_in_a_package(env, folder, tmp_path):
    res = adapt(folder, name="half", k=2, qualities=(1,), steps=2, batch=2, crop=64,
                progress=False, log=lambda m: None, channel_affine=True,
                out_path=tmp_path / "half.safetensors")
    with safe_open(str(res["path"]), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    del tensors["q1.s_affine.3.beta"]
    save_file(tensors, str(tmp_path / "bad.safetensors"), metadata=meta)
    with pytest.raises(NicodecError, match="missing"):
        package.validate(tmp_path / "bad.safetensors", registry.Registry().base_ids())


def test_channel_affine_needs_cawf(env, folder):
    r = run("adapt", folder, "--name", "x", "--method", "naive", "--channel-affine",
            "--steps", 1)
    assert r.exit_code != 0 and "CAwF adapters only" in r.output
    assert "Traceback" not in r.output


def test_no_channel_affine_gives_the_papers_adapter(env, folder, tmp_path):
    out = tmp_path / "paper.safetensors"
    r = run("adapt", folder, "--name", "paper", "--no-channel-affine", "--custom-filters", 2,
            "--qualities", "1", "--steps", 2, "--batch", 2, "-o", out)
    assert r.exit_code == 0, r.output
    assert "channel affine" not in r.output
    keys = load_file(str(out)).keys()
    assert any(k.startswith("q1.p.") for k in keys)
    assert not any("affine" in k for k in keys)


def test_a_fifo_among_the_adapters_is_skipped_not_read(env, cawf_file):
    os.mkfifo(registry.user_adapters_dir() / "blocker.safetensors")
    r = run("models")  # would block forever reading the FIFO
    assert r.exit_code == 0 and "stripes" in r.stdout


def test_synthesis_steps_tune_only_the_decoder_side_of_an_adapter(env, folder, tmp_path):
    """The same adaptation with and without a synthesis stage: the analysis blocks and
    entropy tables (so every file's symbols and size) match, the synthesis blocks differ."""
    packages = {}
    for extra in (0, 4):
        torch.manual_seed(0)
        res = adapt(folder, name="stripes", k=2, qualities=(3,), steps=3, batch=2, crop=64,
                    synthesis_steps=extra, out_path=tmp_path / f"s{extra}.safetensors",
                    progress=False, log=lambda m: None)
        packages[extra] = (load_file(str(res["path"])), res["meta"].qualities[3].training)
    (plain, plain_info), (tuned, tuned_info) = packages[0], packages[4]
    assert "synthesis_steps" not in plain_info and tuned_info["synthesis_steps"] == 4
    assert plain.keys() == tuned.keys()
    decoder_side = [k for k in plain if k.startswith(("q3.p.s", "q3.p.igdn", "q3.s_affine"))]
    assert decoder_side and any(not torch.equal(plain[k], tuned[k]) for k in decoder_side)
    for k in set(plain) - set(decoder_side):
        assert torch.equal(plain[k], tuned[k]), k


def test_the_synthesis_stage_is_a_quarter_of_the_steps_by_default(env, folder, tmp_path):
    res = adapt(folder, name="stripes", k=2, qualities=(1,), steps=4, batch=2, crop=64,
                out_path=tmp_path / "d.safetensors", progress=False, log=lambda m: None)
    assert res["meta"].qualities[1].training["synthesis_steps"] == 1


def test_shipped_models_cannot_be_removed(env, monkeypatch):
    """The base codec and shipped adapters refuse removal with one line saying why."""
    monkeypatch.delenv("NICODEC_MODELS")  # the repository's models: astro ships there
    for name, needle in (("photo", "is the base codec"), ("astro", "ships with nicodec")):
        r = run("models", "remove", name)
        assert r.exit_code == 1 and needle in r.output, r.output
        assert len(r.output.strip().splitlines()) == 1
    assert "astro" in run("models").stdout


def test_a_retrained_shipped_adapter_on_the_same_generation_wins(env, folder, test_models,
                                                                   tmp_path, monkeypatch):
    """Two shipped packages of one name on one base generation: encoding takes the one the
    manifest recorded last (the retrained one), whatever their file names sort to."""
    import shutil

    models = tmp_path / "models"
    shutil.copytree(test_models, models)
    monkeypatch.setenv("NICODEC_MODELS", str(models))
    for stem, steps in (("stripes-a", 2), ("stripes-z", 3)):  # z is the retrained one
        adapt(folder, name="stripes", k=2, qualities=(1,), steps=steps, batch=2, crop=64,
              out_path=models / f"{stem}.safetensors", progress=False, log=lambda m: None)
        registry.record_package(models / f"{stem}.safetensors", "test", models)
    reg = registry.Registry()
    assert reg.find_package("stripes").path.name == "stripes-z.safetensors"
    assert len([m for m in reg.packages() if m.name == "stripes"]) == 2
    src = folder / "nested" / "t0.png"
    assert run("encode", src, "-o", env / "z.nic", "--domain", "stripes", "-q", 1).exit_code == 0
    header, _ = container.parse((env / "z.nic").read_bytes())
    z = package.read_meta(models / "stripes-z.safetensors").qualities[1].id
    assert container.format_id(header.adapter_id) == z
    a = package.read_meta(models / "stripes-a.safetensors").qualities[1].id
    short, full = run("models").stdout, run("models", "--all").stdout
    assert z in short and a not in short and "superseded" in short  # listed: what encodes
    assert z in full and a in full


def test_init_continues_an_adaptation_in_its_own_form(env, cawf_file, folder, tmp_path):
    """--init starts from the adaptation's weights (one step at a vanishing learning rate
    leaves them as they were; a fresh start would not), keeps its K and records its ID."""
    res = adapt(folder, name="stripes2", init="stripes", qualities=(1,), steps=1, lr=1e-12,
                synthesis_steps=0, batch=2, crop=64, out_path=tmp_path / "c.safetensors",
                progress=False, log=lambda m: None)
    start_meta, meta = cawf_file["meta"], res["meta"]
    assert meta.k == 2 and meta.method == "cawf"
    assert meta.qualities[1].training["init_id"] == start_meta.qualities[1].id
    start, cont = load_file(str(cawf_file["path"])), load_file(str(res["path"]))
    weights = [k for k in cont if not k.startswith("q1." + modelfile.TABLE_PREFIX)
               and not k.endswith("quantiles")]
    assert len(weights) > 20 and set(cont) == {k for k in start if k.startswith("q1.")}
    for k in weights:
        assert torch.allclose(cont[k], start[k], atol=1e-6), k
    assert package.validate(res["path"], registry.Registry().base_ids())


def test_init_grows_an_adaptation_to_more_custom_filters(env, cawf_file, folder, tmp_path):
    """--custom-filters above --init's: the trained filters are the leading slices of the
    new tensors and the new codec decodes an image as the old one did (one step at a
    vanishing learning rate); the package records K and where it grew from."""
    res = adapt(folder, name="wider", init="stripes", k=4, qualities=(1,), steps=1, lr=1e-12,
                synthesis_steps=0, batch=2, crop=64, out_path=tmp_path / "w.safetensors",
                progress=False, log=lambda m: None)
    meta = res["meta"]
    assert meta.k == 4 and meta.qualities[1].training["grown_from_k"] == 2
    start, grown = load_file(str(cawf_file["path"])), load_file(str(res["path"]))
    assert grown["q1.p.a1_cb"].shape == (4, 64 + 4, 5, 5)
    for k in ("q1.p.a0_cb", "q1.p.s1_cb", "q1.p.a2_bc", "q1.a_affine.3.alpha"):
        old = start[k]
        assert torch.allclose(grown[k][tuple(slice(0, n) for n in old.shape)], old, atol=1e-6)
    src = folder / "nested" / "t0.png"
    outs = {}
    for domain in ("stripes", "wider"):
        if domain == "wider":
            assert run("models", "import", res["path"]).exit_code == 0
        assert run("encode", src, "-o", tmp_path / f"{domain}.nic", "--domain", domain,
                   "-q", 1).exit_code == 0
        assert run("decode", tmp_path / f"{domain}.nic", "-o",
                   tmp_path / f"{domain}.png").exit_code == 0
        outs[domain] = np.asarray(Image.open(tmp_path / f"{domain}.png"), dtype=np.int16)
    assert np.abs(outs["wider"] - outs["stripes"]).max() <= 1


@pytest.mark.parametrize("args, needle", [
    (("--custom-filters", 1), "custom filters is 2, not 1 (a continued adaptation keeps the "
                              "form it has; it can grow to more than 2 custom filters)"),
    (("--method", "naive"), "method is cawf, not naive"),
    (("--no-channel-affine",), "channel affine is True, not False"),
])
def test_init_refuses_what_it_cannot_continue(env, cawf_file, folder, args, needle):
    r = run("adapt", folder, "--name", "again", "--init", "stripes", "--steps", 1, *args)
    assert r.exit_code == 1 and needle in r.output, r.output
    assert r.output.startswith("error:") and len(r.output.strip().splitlines()) == 1


def test_init_needs_every_quality_it_is_to_train(env, folder, tmp_path):
    one = adapt(folder, name="one", k=2, qualities=(1,), steps=1, batch=2, crop=64,
                out_path=tmp_path / "one.safetensors", progress=False, log=lambda m: None)
    r = run("adapt", folder, "--name", "again", "--init", one["path"], "--steps", 1)
    assert r.exit_code == 1 and "has no quality 3 (it has 1; pick them with --qualities)" \
        in r.output, r.output


def test_init_names_a_file_or_an_installed_adaptation(env, folder, tmp_path):
    for init, needle in (("nosuch", "not a file, and unknown domain 'nosuch'"),
                         (tmp_path / "nosuch.safetensors", "no such file")):
        r = run("adapt", folder, "--name", "again", "--init", init, "--steps", 1)
        assert r.exit_code == 1 and needle in r.output, r.output


def test_adapt_never_writes_over_an_installed_model_or_adaptation(env, cawf_file, folder):
    """``-o`` naming an installed adaptation's file (even to continue it: ``--init X -o X``)
    or a base model's is refused before training: the files written with it name its
    IDs. Nothing changes on disk."""
    reg = registry.Registry()
    base_file = reg.dir / reg.find_base(quality=1).file
    for target, what in ((cawf_file["path"], "adaptation 'stripes'"),
                         (base_file, f"base model {reg.find_base(quality=1).id}")):
        before = target.read_bytes()
        r = run("adapt", folder, "--name", "again", "--init", "stripes", "--steps", 1,
                "-o", target)
        assert r.exit_code == 1 and r.output.startswith(f"error: {target} holds the installed "
                                                        f"{what}; replacing it"), r.output
        assert len(r.output.strip().splitlines()) == 1
        assert target.read_bytes() == before
    with pytest.raises(NicodecError, match="holds the installed adaptation 'stripes'"):
        adapt(folder, name="stripes2", qualities=(1,), steps=1, out_path=cawf_file["path"],
              progress=False, log=lambda m: None)


def test_adapt_trains_on_the_distortion_and_quantization_it_is_given(env, folder, tmp_path):
    """``--distortion psnr --mixed-quantization`` reach the loop (the same seed and steps end
    at other weights) and the package records them; the default records neither."""
    runs = {}
    for label, opts in (("plain", {}), ("psnr", {"distortion": "psnr"}),
                        ("mixed", {"mixed_quantization": True})):
        torch.manual_seed(0)
        res = adapt(folder, name="stripes", k=2, qualities=(3,), steps=3, batch=2, crop=64,
                    synthesis_steps=0, out_path=tmp_path / f"{label}.safetensors",
                    progress=False, log=lambda m: None, **opts)
        runs[label] = (load_file(str(res["path"])), res["meta"].qualities[3].training)
    plain, plain_info = runs["plain"]
    assert "distortion" not in plain_info and "mixed_quantization" not in plain_info
    assert runs["psnr"][1]["distortion"] == "psnr"
    assert runs["mixed"][1]["mixed_quantization"] is True
    for label in ("psnr", "mixed"):
        tensors = runs[label][0]
        assert any(not torch.equal(plain[k], tensors[k]) for k in plain), label
    r = run("adapt", folder, "--name", "x", "--distortion", "ssim")
    assert r.exit_code == 2 and "'ssim' is not one of" in r.output
