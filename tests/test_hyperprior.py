"""The hyperprior entropy model: integer h_s, frozen tables, the coder's round trips and its
refusals of corrupt payloads."""

import numpy as np
import pytest
import torch

from conftest import int_conv3 as conv3
from conftest import object_ints as obj
from nicodec import hyperprior as hp
from nicodec.entropy import TOTAL
from nicodec.errors import NicodecError
from nicodec.network import HyperPrior


@pytest.fixture(scope="module")
def hyper():
    torch.manual_seed(0)
    model = HyperPrior(m=8, n=6)
    with torch.no_grad():  # give h_s a spread of means and scales, as training would
        model.h_s[4].bias[:8].uniform_(-3, 3)
        model.h_s[4].bias[8:].uniform_(-4, 3)
    return hp.export_tensors(model)


@pytest.fixture(scope="module")
def coder(hyper):
    return hp.HyperCoder({"median": torch.zeros(8)}, hyper)


def _reference_hs(hyper, zq):
    """h_s in Python integers: transposed convolutions by their definition."""
    def deconv(x, w, b):  # x (Cin, H, W), w (Cin, Cout, 5, 5), stride 2, pad 2, out 2H
        cin, h, wd = x.shape
        cout = w.shape[1]
        out = np.zeros((cout, 2 * h + 4, 2 * wd + 4), dtype=object)
        for i in range(h):
            for j in range(wd):
                for c in range(cin):
                    out[:, 2 * i:2 * i + 5, 2 * j:2 * j + 5] += x[c, i, j] * w[c]
        return out[:, 2:2 + 2 * h, 2:2 + 2 * wd] + b[:, None, None]


    leak = int(hyper["fixed_point"][hp.LAYOUT_LEAK])

    def act(a):
        if not leak:
            return np.clip(a, 0, hp.ACT_MAX)
        return np.clip(np.where(a < 0, a // 2 ** leak, a), -hp.ACT_MAX, hp.ACT_MAX)

    wb, ab = hp.WEIGHT_BITS, hp.ACT_BITS
    x = zq.astype(object)
    x = act(deconv(x, obj(hyper["h_s.0.weight"]), obj(hyper["h_s.0.bias"])) // 2 ** (wb - ab))
    x = act(deconv(x, obj(hyper["h_s.2.weight"]), obj(hyper["h_s.2.bias"]) * 2 ** ab) // 2 ** wb)
    out = conv3(x, obj(hyper["h_s.4.weight"]), obj(hyper["h_s.4.bias"]) * 2 ** ab)
    m_ch = out.shape[0] // 2
    unit = 2 ** (wb + ab)
    m = (out[:m_ch] * hp.MEAN_STEPS + unit // 2) // unit
    scale = np.searchsorted(hyper["scale_thresholds"].numpy(), out[m_ch:].astype(np.int64),
                            side="right")
    shift = m // hp.MEAN_STEPS
    return shift.astype(np.int64), scale * hp.MEAN_STEPS + (m - shift * hp.MEAN_STEPS).astype(np.int64)


@pytest.mark.parametrize("leak", hp.LEAKS)
def test_integer_synthesis_is_exact_integer_arithmetic(leak):
    torch.manual_seed(0)
    model = HyperPrior(m=8, n=6, leak_bits=leak)
    with torch.no_grad():
        model.h_s[4].bias[:8].uniform_(-3, 3)
        model.h_s[0].bias.uniform_(-2, 2)  # negative pre-activations for the leak
    hyper = hp.export_tensors(model)
    assert int(hyper["fixed_point"][hp.LAYOUT_LEAK]) == leak
    rng = np.random.default_rng(1)
    zq = rng.integers(-40, 41, (6, 3, 4))
    zq[0, 0, 0] = hp.ZQ_MAX  # the largest input the decoder accepts
    shift, table = hp.IntegerSynthesis(hyper)(zq, (12, 16))
    ref_shift, ref_table = _reference_hs(hyper, zq)
    assert np.array_equal(shift, ref_shift) and np.array_equal(table, ref_table)


def test_integer_synthesis_tiles_give_the_same_result(hyper):
    h_s = hp.IntegerSynthesis(hyper)
    zq = np.random.default_rng(2).integers(-20, 21, (6, 9, 11))
    whole = h_s(zq, (33, 41), tile=64)
    for tile in (1, 2, 3, 5):
        tiled = h_s(zq, (33, 41), tile=tile)
        assert all(np.array_equal(a, b) for a, b in zip(whole, tiled))


def test_gaussian_tables_are_valid_frequency_tables():
    t = hp.gaussian_tables()
    length = t["length"].numpy()
    freq = t["freq"].numpy().astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(length + 1)])
    assert len(length) == hp.SCALE_LEVELS * hp.MEAN_STEPS and starts[-1] == len(freq)
    assert all(freq[a:b].sum() == TOTAL for a, b in zip(starts, starts[1:]))
    assert freq.min() >= 1
    thresholds = hp.scale_thresholds().numpy()
    assert np.all(np.diff(thresholds) > 0)


def test_thresholds_pick_the_nearest_scale_in_log():
    thresholds = hp.scale_thresholds().numpy()
    unit = 2 ** (hp.WEIGHT_BITS + hp.ACT_BITS)
    sig = hp.scales()
    for s in (-6.0, -1.0, 0.0, 0.5, 2.0, 10.0, 80.0):
        k = np.searchsorted(thresholds, int(s * unit), side="right")
        want = np.argmin(np.abs(np.log(sig) - np.log(float(hp.sigma(torch.tensor(s))))))
        assert k == want


@pytest.mark.parametrize("shape,lo,hi", [((8, 5, 7), -4, 5), ((8, 4, 4), -2000, 2000),
                                          ((8, 4, 4), -6000, 6000), ((8, 1, 1), 0, 1),
                                          ((8, 13, 2), -1, 2), ((8, 2, 1), -3, 3)])
def test_round_trip(coder, shape, lo, hi):
    q = np.random.default_rng(3).integers(lo, hi, shape).astype(np.int32)
    data = coder.encode(q)
    out = coder.decode(data, shape)
    assert out.dtype == np.int32 and np.array_equal(out, q)
    assert abs(coder.ideal_bits(q) - 8 * len(data)) < 64 + 0.02 * 8 * len(data)


def test_flat_latents_cost_almost_nothing(coder):
    q = np.zeros((8, 32, 32), np.int32)
    assert np.array_equal(coder.decode(coder.encode(q), q.shape), q)


@pytest.mark.parametrize("damage", ["truncate", "extend", "flip", "odd"])
def test_corrupt_payload_is_refused(coder, damage):
    q = np.random.default_rng(4).integers(-6, 7, (8, 8, 8)).astype(np.int32)
    data = bytearray(coder.encode(q))
    if damage == "truncate":
        data = data[:-4]
    elif damage == "extend":
        data += b"\x01\x00\x00\x00"
    elif damage == "flip":
        data[len(data) // 2] ^= 0x40
    else:
        data = data[:-1]
    with pytest.raises(NicodecError):
        out = coder.decode(bytes(data), q.shape)
        assert not np.array_equal(out, q)  # never a silent wrong decode


def test_a_model_file_with_another_fixed_point_layout_is_refused(hyper):
    changed = dict(hyper, fixed_point=hyper["fixed_point"] + 1)
    with pytest.raises(ValueError, match="fixed-point"):
        hp.HyperCoder({"median": torch.zeros(8)}, changed)


def test_side_information_of_a_large_grid_is_computed_in_tiles(coder, monkeypatch):
    q = np.random.default_rng(5).integers(-3, 4, (8, 40, 52)).astype(np.int32)
    whole = coder.side(q)
    monkeypatch.setattr(hp, "SIDE_TILE", 16)
    tiled = coder.side(q)
    # the same z up to float sums in another order: at most a few values one step apart
    assert tiled.shape == whole.shape and np.abs(tiled - whole).max() <= 1
    assert np.mean(tiled != whole) < 0.01
    assert np.array_equal(coder.decode(coder.encode(q), q.shape), q)


# --------------------------------------------------------------------------- as a generation
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

from click.testing import CliRunner  # noqa: E402
from PIL import Image  # noqa: E402

from conftest import smooth_image, untrained_base  # noqa: E402
from nicodec import container, modelfile, package, registry  # noqa: E402
from nicodec.adapt import adapt  # noqa: E402
from nicodec.cli import main  # noqa: E402
from nicodec.container import format_id  # noqa: E402


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def seeded_hyper(m: int, seed: int) -> HyperPrior:
    torch.manual_seed(seed)
    model = HyperPrior(m=m)
    with torch.no_grad():
        model.h_s[4].bias[m:].uniform_(-2, 2)
    return model


@pytest.fixture(scope="module")
def hyper_models(tmp_path_factory):
    """Generation 1 (factorized, quality 1) and generation 2: its transforms + a hyperprior."""
    d = tmp_path_factory.mktemp("models")
    entry = untrained_base(d)
    reg = registry.Registry(d)
    registry.export_hyperprior(entry, reg.base_tensors(entry)[0], seeded_hyper(64, 2), steps=0,
                               command="test", generation=2, models_dir=d)
    return d


@pytest.fixture()
def hyper_env(hyper_models, tmp_path, monkeypatch):
    monkeypatch.setenv("NICODEC_MODELS", str(hyper_models))
    monkeypatch.setenv("NICODEC_HOME", str(tmp_path / "home"))
    reg = registry.Registry()
    old, new = sorted(reg.bases(), key=lambda m: m.generation)
    return tmp_path, reg, old, new


def test_hyperprior_generation_keeps_the_transforms_and_their_pixels(hyper_env):
    tmp, reg, old, new = hyper_env
    assert (new.arch, new.transforms) == ("factorized+hyperprior", old.id)
    img = smooth_image(72, 100)
    Image.fromarray(img).save(tmp / "i.png")
    assert run("encode", tmp / "i.png", "-q", 1, "-o", tmp / "new.nic").exit_code == 0
    header, _ = container.parse((tmp / "new.nic").read_bytes())
    assert (container.format_id(header.base_id), header.coder) == (new.id, 2)
    (tmp / "old.nic").write_bytes(reg.codec(quality=1, generation=1).encode(img))
    assert container.parse((tmp / "old.nic").read_bytes())[0].coder == 1
    for name in ("new", "old"):
        r = run("decode", tmp / f"{name}.nic", "-o", tmp / f"{name}.png")
        assert r.exit_code == 0, r.output
    # the same latents, coded another way: the same pixels
    assert np.array_equal(np.asarray(Image.open(tmp / "new.png")),
                          np.asarray(Image.open(tmp / "old.png")))
    info = run("info", tmp / "new.nic").stdout
    assert "constriction-rans-hyperprior" in info and "generation 2" in info


def test_a_header_whose_coder_is_not_its_models_is_refused(hyper_env):
    tmp, reg, old, new = hyper_env
    data = bytearray(reg.codec(quality=1).encode(smooth_image(32, 32)))
    data[7] = 1  # coder 1, but the ID names the hyperprior model
    crc = container.zlib.crc32(bytes(data[32:]), container.zlib.crc32(bytes(data[:28])))
    data[28:32] = crc.to_bytes(4, "little")
    (tmp / "x.nic").write_bytes(bytes(data))
    r = run("decode", tmp / "x.nic", "-o", tmp / "x.png")
    assert r.exit_code == 1 and "error: corrupt .nic file (entropy coder 1" in r.output
    assert not (tmp / "x.png").exists()


def test_decoding_a_hyperprior_file_needs_no_compressai(hyper_env):
    tmp, reg, old, new = hyper_env
    (tmp / "n.nic").write_bytes(reg.codec(quality=1).encode(smooth_image(40, 40)))
    code = ("import sys; from nicodec import api; api.decompress(open(sys.argv[1], 'rb').read());"
            " assert 'compressai' not in sys.modules, 'compressai imported'")
    r = subprocess.run([sys.executable, "-c", code, str(tmp / "n.nic")], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr


def test_decoding_an_adapters_file_needs_no_compressai(hyper_package):
    """Checking an adapter package takes its expected shapes from the architecture, not from
    a training network: decoding its files imports no CompressAI (seconds per decode)."""
    tmp, plain, with_hyper = hyper_package
    plain.unlink()
    assert run("models", "import", with_hyper).exit_code == 0
    Image.fromarray(smooth_image(48, 64)).save(tmp / "i.png")
    assert run("encode", tmp / "i.png", "--domain", "mine", "-q", 1,
               "-o", tmp / "a.nic").exit_code == 0
    code = ("import sys; from nicodec import api; api.decompress(open(sys.argv[1], 'rb').read());"
            " assert 'compressai' not in sys.modules, 'compressai imported'")
    r = subprocess.run([sys.executable, "-c", code, str(tmp / "a.nic")], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr


def tiny_adapter(tmp, k: int):
    """A CAwF adapter "mine" (quality 1, K=k, no hyperprior) on the installed newest base,
    trained two steps on three small images; its package path."""
    folder = tmp / "target"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(smooth_image(48, 64, seed=i)).save(folder / f"t{i}.png")
    return adapt(folder, name="mine", k=k, qualities=(1,), steps=2, batch=2, crop=32,
                 hyperprior_steps=0, progress=False, log=lambda m: None)["path"]


@pytest.fixture()
def hyper_package(hyper_env):
    """A CAwF adapter on generation 2, and a copy of it with a hyperprior per quality."""
    tmp, reg, old, new = hyper_env
    path = tiny_adapter(tmp, k=2)
    hyper = {1: hp.export_tensors(seeded_hyper(66, 3))}
    out = tmp / "mine-hyper.safetensors"
    package.with_hyperprior(path, reg.base_ids(), hyper, out, {1: {"hyperprior_steps": 0}})
    return tmp, path, out


def test_an_adapter_with_a_hyperprior_imports_encodes_and_decodes(hyper_package):
    tmp, plain, with_hyper = hyper_package
    plain.unlink()
    r = run("models", "import", with_hyper)
    assert r.exit_code == 0, r.output
    Image.fromarray(smooth_image(64, 80)).save(tmp / "i.png")
    assert run("encode", tmp / "i.png", "--domain", "mine", "-q", 1,
               "-o", tmp / "a.nic").exit_code == 0
    header, _ = container.parse((tmp / "a.nic").read_bytes())
    assert header.coder == 2 and header.adapter_id != 0
    r = run("decode", tmp / "a.nic", "-o", tmp / "a.png")
    assert r.exit_code == 0, r.output


def test_a_shipped_adapter_with_a_step_slope_encodes_on_its_grids(hyper_package, monkeypatch):
    """A shipped hyperprior adapter whose manifest entry has a ``step_slope`` for a quality
    picks each image's grid there (format version 3, decoded by its header's IDs); the same
    adapter imported by a user, or without the slope, stays on the unit grid."""
    from nicodec import quantstep

    tmp, plain, with_hyper = hyper_package
    plain.unlink()  # the user's adapter without a hyperprior
    models = tmp / "shipped"
    shutil.copytree(registry.models_dir(), models)  # the manifest is written to
    shutil.copy(with_hyper, models / with_hyper.name)
    registry.record_package(models / with_hyper.name, "test", directory=models)
    monkeypatch.setenv("NICODEC_MODELS", str(models))
    adapter = package.read_meta(with_hyper).qualities[1].id
    img = smooth_image(48, 64)
    Image.fromarray(img).save(tmp / "i.png")

    def encode(name):
        r = run("encode", tmp / "i.png", "--domain", "mine", "-q", 1, "-o", tmp / name)
        assert r.exit_code == 0, r.output
        return container.parse((tmp / name).read_bytes())[0]

    assert registry.Registry().codec(quality=1, domain="mine").step_slope is None
    assert encode("unit.nic").version != 3
    entry = registry.set_step_slope(adapter, 0.5, "test")
    assert entry.step_slopes == {"1": 0.5} and entry.step_slope_command == "test"
    codec = registry.Registry().codec(quality=1, domain="mine")
    assert codec.step_slope == 0.5
    header = encode("fine.nic")
    assert header.version == 3 and header.step == quantstep.choose(codec, img)[0] != 0
    assert format_id(header.adapter_id) == adapter
    r = run("decode", tmp / "fine.nic", "-o", tmp / "fine.png")
    assert r.exit_code == 0, r.output
    assert np.array_equal(np.asarray(Image.open(tmp / "fine.png")),
                          codec.decode(*container.parse((tmp / "fine.nic").read_bytes())))
    assert registry.Manifest.read(models).packages[-1].step_slopes == {"1": 0.5}
    with pytest.raises(NicodecError, match="no base model or shipped adapter"):
        registry.set_step_slope("0badf00d", 1.0, "test")
    (models / with_hyper.name).unlink()  # the user's own copy has no manifest entry
    r = run("models", "import", with_hyper)
    assert r.exit_code == 0, r.output
    assert registry.Registry().codec(quality=1, domain="mine").step_slope is None


def _tampered(src, out, change):
    """``src`` with quality 1's hyperprior changed by ``change`` and its ID recomputed, so
    that only the content checks can catch it."""
    meta = package.read_meta(src)
    tensors, _ = modelfile.load(src)
    qt = package.quality_tensors(tensors, 1)
    change(qt)
    info = meta.qualities[1].to_json()
    info.pop("id")
    package.save(out, name=meta.name, method=meta.method, k=meta.k, entries={1: (qt, info)})
    return out


@pytest.mark.parametrize("what,change", [
    ("frozen", lambda t: t["hyper.gauss.freq"].__setitem__(0, 1)),
    ("shape", lambda t: t.__setitem__("hyper.h_s.4.bias", t["hyper.h_s.4.bias"][:-2])),
    ("exact", lambda t: t["hyper.h_s.2.weight"].__setitem__((0, 0, 0, 0), 2 ** 30)),
    ("finite", lambda t: t["hyper.h_a.0.bias"].__setitem__(0, float("nan"))),
    ("missing", lambda t: t.pop("hyper.scale_thresholds")),
    ("z", lambda t: t["hyper.z.freq"].__setitem__((0, 0), 0)),
])
def test_an_adapter_with_a_malformed_hyperprior_is_refused(hyper_package, what, change):
    tmp, plain, with_hyper = hyper_package
    bad = _tampered(with_hyper, tmp / "bad.safetensors", change)
    r = run("models", "import", bad)
    assert r.exit_code == 1 and r.output.startswith("error: ") and "Traceback" not in r.output
    assert r.output.count("\n") == 1, r.output


def test_z_filters_are_the_networks():
    from nicodec.network import EB_FILTERS

    assert hp.Z_FILTERS == EB_FILTERS


def test_a_stored_hyperprior_loads_back_for_training_and_widens(hyper):
    model = HyperPrior.from_tensors(hyper)
    again = hp.export_tensors(model)
    assert set(again) == set(hyper)
    for k in hyper:  # the integers of h_s round-trip exactly, float tensors too
        assert torch.equal(again[k], hyper[k]), k
    wide = HyperPrior.from_tensors(hyper, m=12)
    q = torch.randint(-3, 4, (1, 8, 16, 16)).float()
    q_wide = torch.cat([q, torch.randint(-3, 4, (1, 4, 16, 16)).float()], 1)
    wide.eval(), model.eval()
    with torch.no_grad():  # the first 8 channels' predictions do not see the new ones
        z, z_wide = model.side(q), wide.side(q_wide)
        assert torch.allclose(z, z_wide, atol=1e-5)
        assert torch.allclose(model.h_s(z)[:, :8], wide.h_s(z_wide)[:, :8], atol=1e-4)


@pytest.mark.parametrize("ratio,coder", [(0.5, 2), (1.5, 1), (None, 1)])
def test_adapt_on_a_hyperprior_base_keeps_its_own_hyperprior_when_it_pays(
        hyper_env, monkeypatch, ratio, coder):
    """Adapt trains the adaptation's own hyperprior and keeps it only if it codes the
    training latents in fewer bits than the adaptation's own tables (``ratio`` forced
    here); ``--hyperprior-steps 0`` (None) trains none."""
    from nicodec import hypertrain, quantstep

    tmp, reg, old, new = hyper_env
    fit = hypertrain.fit
    calls = []

    def forced(codec, files, steps, start=None, log=print, lr=None):
        calls.append((steps, start is not None))
        return fit(codec, files, steps, start, log, lr)[0], ratio

    monkeypatch.setattr(hypertrain, "fit", forced)
    slopes = []

    def measured(codec, images, spread=2):  # what an adapter trained longer would measure
        slopes.append(len(images))
        return 7.5

    monkeypatch.setattr(quantstep, "slope", measured)
    folder = tmp / "target"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(smooth_image(48, 64, seed=i)).save(folder / f"t{i}.png")
    Image.fromarray(smooth_image(40, 56, seed=9)).save(tmp / "i.png")
    extra = ["--hyperprior-steps", 0 if ratio is None else 3]
    r = run("adapt", folder, "--name", "mine", "--steps", 2, "--batch", 2, *extra)
    assert r.exit_code == 0, r.output
    assert calls == ([] if ratio is None else [(3, False)])
    if ratio == 1.5:
        assert "more bits than the adaptation's own tables: left out" in " ".join(r.output.split())
    meta = registry.Registry().find_package("mine")
    assert meta.qualities[1].base_id == new.id
    assert meta.qualities[1].training.get("hyperprior_steps", 0) == (3 if coder == 2 else 0)
    # an adapter with a hyperprior measures its step_slope on its training images (2: one of
    # the 3 is held out)
    assert slopes == ([2] if coder == 2 else [])
    assert meta.qualities[1].step_slope == (7.5 if coder == 2 else None)
    codec = registry.Registry().codec(quality=1, domain="mine")
    assert codec.step_slope == meta.qualities[1].step_slope
    assert run("encode", tmp / "i.png", "--domain", "mine", "-q", 1,
               "-o", tmp / "m.nic").exit_code == 0
    header = container.parse((tmp / "m.nic").read_bytes())[0]
    assert header.coder == coder
    assert header.step == quantstep.choose(codec, np.asarray(Image.open(tmp / "i.png")))[0]
    r = run("decode", tmp / "m.nic", "-o", tmp / "m.png")
    assert r.exit_code == 0, r.output


def test_effort_searches_under_the_hyperpriors_own_rate(hyper_env):
    from nicodec import effort

    tmp, reg, old, new = hyper_env
    codec = reg.codec(quality=1)
    img = smooth_image(48, 64, seed=4)
    q1 = effort.refine(codec, img, level=1)
    q2 = effort.refine(codec, img, level=2)
    assert isinstance(codec.coder.density(q1), hp.ConditionalDensity)
    assert effort.objective(codec, q2, img, codec.lam)[0] <= \
        effort.objective(codec, q1, img, codec.lam)[0]
    data = effort.encode(codec, img, level=2)
    assert np.array_equal(codec.coder.decode(container.parse(data)[1], q2.shape), q2)
