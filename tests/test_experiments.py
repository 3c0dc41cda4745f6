"""`make experiments` at toy scale: the pipeline runs end to end and its numbers mean what
docs/experiments.md says (CAwF leaves the source untouched, the naive decoder forgets)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import study.__main__ as study_main
from study import engine, report, sections
from nicodec.data import CropSampler, MixedSampler, prepared_name
from nicodec.errors import NicodecError
from nicodec.network import AdaptedCodec, Adapter, FactorizedPrior, count_parameters, widen

from conftest import smooth_image


def test_widen_computes_the_adapted_codec_at_init():
    torch.manual_seed(3)
    base = FactorizedPrior().eval()
    torch.manual_seed(0)
    adapted = AdaptedCodec(base, Adapter(base, 16)).eval()
    wide = widen(base, 16, seed=0).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        y = adapted.analysis(x)
        assert torch.equal(wide.analysis(x), y)
        assert torch.equal(wide.synthesis(y), adapted.synthesis(y))
    assert count_parameters(wide) == 1_019_203  # the paper's 80-filter count (Table 3)


def test_mixed_sampler_draws_equally_from_each_domain():
    dark = CropSampler([np.zeros((80, 80, 3), np.uint8)], crop=64)
    light = CropSampler([np.full((80, 80, 3), 255, np.uint8)] * 5, crop=64)
    batch = MixedSampler([dark, light]).batch(7)
    means = batch.mean(axis=(1, 2, 3))
    assert batch.shape == (7, 3, 64, 64)
    assert (means == 0).sum() == 4 and (means == 1).sum() == 3


def test_training_subsets_are_nested(env, monkeypatch, tmp_path):
    _fake_data(tmp_path, monkeypatch, n_train=12)
    small = engine.training_files("astro", 5)
    assert set(small) < set(engine.training_files("astro", 10))
    assert len(engine.training_files("astro", engine.ALL)) == 12


def test_the_study_trains_on_the_photos_it_was_published_with(env, monkeypatch, tmp_path):
    _fake_data(tmp_path, monkeypatch, n_train=4)
    pinned = json.loads(engine.PHOTO_TRAIN_V01.read_text())["train"]
    photos = tmp_path / "data/photo/train"
    (photos / "grown-later.png").write_bytes((photos / prepared_name(pinned[0])).read_bytes())
    assert engine.training_files("photo", engine.ALL) == sorted(
        photos / prepared_name(rel) for rel in pinned)
    (photos / prepared_name(pinned[1])).unlink()
    with pytest.raises(NicodecError, match="run 'make data'"):
        engine.training_files("photo", engine.ALL)


def _fake_data(root, monkeypatch, n_train=6, n_test=2):
    """Small smooth images as every domain's prepared split; photo's training images carry
    the names of the study's pinned photos (a pin file of the first ``n_train``)."""
    monkeypatch.setenv("NICODEC_DATA", str(root / "data"))
    pinned = json.loads(engine.PHOTO_TRAIN_V01.read_text())["train"][:n_train]
    pin = root / "photo-train.json"
    pin.write_text(json.dumps({"train": pinned}))
    monkeypatch.setattr(engine, "PHOTO_TRAIN_V01", pin)
    for d, domain in enumerate(("photo", "astro", "screen")):
        for part, n in (("train", n_train), ("test", n_test)):
            folder = root / "data" / domain / part
            folder.mkdir(parents=True)
            for i in range(n):
                name = (prepared_name(pinned[i]) if (domain, part) == ("photo", "train")
                        else f"{i}.png")
                Image.fromarray(smooth_image(96, 112, seed=10 * d + i)).save(folder / name)


def test_experiments_run_end_to_end_at_toy_scale(env, monkeypatch, tmp_path):
    _fake_data(tmp_path, monkeypatch)
    out = tmp_path / "results"
    scale = engine.Scale(steps=2, crop=64, batch=2, test_images=2)
    results = study_main.run(scale, tmp_path / "work", out, "cpu",
                              sections=["table2-photo", "catastrophic", "adapter-size"],
                              log=lambda *a: None)
    summary = json.loads((out / "summary.json").read_text())
    assert {"table2", "catastrophic", "adapter_size"} <= summary.keys()
    for name in ("fig3_photo-astro.png", "fig3_photo-screen.png", "fig4_forgetting.png",
                 "experiments_tables.md"):
        assert (out / name).stat().st_size > 0

    rows = {(r["pair"], r["method"], r["domain"]): r for t in results["table2"]
            for r in t["rows"]}
    assert rows[("photo->astro", "cawf", "photo")]["vs_t1"]["bd_psnr"] == 0.0
    assert rows[("photo->astro", "cawf+affine", "photo")]["vs_t1"]["bd_psnr"] == 0.0
    assert {r["method"] for r in summary["table2"]} == {"t1", "naive", "cawf", "cawf+affine",
                                                        "jpeg2000"}
    # the two CAwF forms are separate jobs; the channel affine is stored with the adapter
    jobs = tmp_path / "work" / "jobs"
    plain = next(jobs.glob("cawf_k16_photo_astro_nall_s2*-q1.safetensors"))
    affine = next(jobs.glob("cawf+affine_k16_photo_astro_nall_s2*-q1.safetensors"))
    from safetensors.torch import load_file
    extra = set(load_file(str(affine))) - set(load_file(str(plain)))
    assert extra and all(k.startswith(("a_affine.", "s_affine.")) for k in extra)
    (f,) = [f for f in summary["findings"] if f["pair"] == "photo->astro"]
    # both code the source with the untouched base (BD-rate may be undefined at toy scale)
    assert f["cawf_affine_source_change"] in (0.0, None)
    assert f["cawf_affine_keeps_source"] == f["cawf_keeps_source"]
    for row in summary["adapter_size"]:
        assert row["source_bd_rate"] in (0.0, None)
    assert all(r["source_identical"] for r in results["adapter_size"]["rows"])
    ks = [r["k"] for r in summary["adapter_size"] if r["form"] == "cawf"]
    assert ks == [2, 4, 8, 16]
    added = [r["params_added"] for r in summary["adapter_size"]]
    assert added[:4] == sorted(set(added[:4])) and added[4] < added[0]  # affine: lightest
    assert added[3] == 369_792  # K=16: the adapter file's custom parameters
    # t1 bitstreams decoded by t1: the t1 curve's PSNR on the source test set, exactly.
    t1_photo = next(t for t in results["table2"] if t["pair"] == "photo->astro")
    t1_psnr = [p["psnr"] for p in t1_photo["curves"]["photo"]["t1"]["points"]]
    for c in (c for c in results["catastrophic"] if c["pair"].startswith("photo->")):
        assert [r["psnr_t1"] for r in c["per_quality"]] == pytest.approx(t1_psnr, abs=1e-9)

    # Resumable: a second run trains nothing and gives the same numbers.
    again = study_main.run(scale, tmp_path / "work", out, "cpu",
                            sections=["table2-photo"], log=lambda *a: None)
    assert again["train_seconds_this_run"] == 0
    assert again["table2"][0]["rows"] == results["table2"][0]["rows"]


def test_each_method_trains_at_its_own_learning_rate(env, monkeypatch, tmp_path):
    _fake_data(tmp_path, monkeypatch)
    monkeypatch.setattr(sections, "LR_GRID", (1e-4, 1e-3, 1e12))
    scale = engine.Scale(steps=3, crop=64, batch=2, lr=1e-4, adapter_lr=1e-3,
                              test_images=2)
    results = study_main.run(scale, tmp_path / "work", tmp_path / "out", "cpu",
                              sections=["lr-sweep"], log=lambda *a: None)
    rows = results["lr_sweep"]["rows"]
    assert [(r["method"], r["lr"]) for r in rows] == [
        (m, lr) for m in ("naive", "cawf", "joint") for lr in (1e-4, 1e-3, 1e12)]
    assert [r["study"] for r in rows] == [True, False, False, False, True, False,
                                          True, False, False]
    # An absurd learning rate diverges: recorded as such, and not trained again on a rerun.
    assert all("diverged_at_step" in r for r in rows if r["lr"] == 1e12)
    assert not any("diverged_at_step" in r for r in rows if r["lr"] < 1)
    for method in ("naive", "cawf", "joint"):
        (best,) = [r for r in rows if r["method"] == method and r["best"]]
        assert best["lr"] < 1
    again = study_main.run(scale, tmp_path / "work", tmp_path / "out", "cpu",
                            sections=["lr-sweep"], log=lambda *a: None)
    assert again["train_seconds_this_run"] == 0
    assert again["lr_sweep"]["rows"] == rows
    # The study's joint model is its own reference: exactly 0 on both test sets.
    study_joint = rows[6]
    assert study_joint["target_vs_joint"]["bd_psnr"] == 0.0
    assert study_joint["source_vs_joint"]["bd_psnr"] == 0.0
    # Each job was trained at the learning rate its files are named after.
    for info in (tmp_path / "work" / "jobs").glob("*.json"):
        recorded = json.loads(info.read_text())
        assert ("diverged_at_step" in recorded) == (recorded["lr"] == 1e12)
        assert info.name.endswith(f"lr{recorded['lr']:g}-q{recorded['quality']}.json")
    trained = {p.name.split("_s3")[0] + f"@{json.loads(p.read_text())['lr']:g}"
               for p in (tmp_path / "work" / "jobs").glob("*-q1.json")}
    assert {"cawf_k16_astro_screen_nall@0.0001", "cawf_k16_astro_screen_nall@0.001",
            "naive_photo_astro_nall@0.0001"} <= trained  # astro's t1 at the study's lr only
    assert "naive_photo_astro_nall@0.001" not in trained
    assert "lr_sweep" in json.loads((tmp_path / "out" / "summary.json").read_text())
    others = results["lr_sweep"]["other_pairs"]
    assert [(r["pair"], r["lr"]) for r in others] == [
        (p, lr) for p in ("photo->astro", "photo->screen", "screen->astro")
        for lr in (1e-4, 1e-3)]


def test_seeds_repeat_naive_and_cawf_and_summarise_the_gap(env, monkeypatch, tmp_path):
    _fake_data(tmp_path, monkeypatch)
    scale = engine.Scale(steps=2, crop=64, batch=2, test_images=2)
    results = study_main.run(scale, tmp_path / "work", tmp_path / "out", "cpu",
                              sections=["table2-photo", "seeds"], log=lambda *a: None,
                              only_pairs={"photo->astro"}, seed_count=2)
    (sd,) = results["seeds"]
    assert [p["seed"] for p in sd["per_seed"]] == [0, 1]
    # seed 0 is the study's own run: the same numbers as Table 2
    t2 = {(r["method"], r["domain"]): r for r in results["table2"][0]["rows"]}
    assert sd["per_seed"][0]["cawf"]["bd_psnr"] == t2["cawf", "astro"]["bd_psnr"]
    assert sd["per_seed"][0]["naive"]["bd_psnr"] == t2["naive", "astro"]["bd_psnr"]
    jobs = {p.name.split("_s2c")[0] for p in (tmp_path / "work" / "jobs").glob("*-q1.json")}
    assert {"naive_photo_astro_nall_seed1", "cawf_k16_photo_astro_nall_seed1",
            "cawf+affine_k16_photo_astro_nall_seed1"} <= jobs
    jobs_dir = tmp_path / "work" / "jobs"
    a = json.loads(next(jobs_dir.glob("cawf_k16_photo_astro_nall_s2*-q1.json")).read_text())
    b = json.loads(next(jobs_dir.glob("cawf_k16_photo_astro_nall_seed1_s2*-q1.json")).read_text())
    assert a["loss"] != b["loss"]  # another initialisation and crop order
    for p in sd["per_seed"]:
        naive, cawf = p["naive"]["bd_rate"], p["cawf"]["bd_rate"]
        assert p["gap"] == (None if naive is None or cawf is None else cawf - naive)
        both = p["cawf+affine"]["bd_rate"]
        assert p["gap_cawf_affine"] == (None if naive is None or both is None
                                        else both - naive)
    (f,) = report.summary(results)["findings"]
    defined = [p["gap"] for p in sd["per_seed"] if p["gap"] is not None]
    assert f["target_gap_seeds"] == len(defined)
    assert f["target_gap_mean"] == (pytest.approx(np.mean(defined)) if defined else None)
    if len(defined) == 2:
        assert f["target_gap_se"] == pytest.approx(np.std(defined, ddof=1) / np.sqrt(2))
    psnr_gaps = [p["cawf"]["bd_psnr"] - p["naive"]["bd_psnr"] for p in sd["per_seed"]
                 if None not in (p["cawf"]["bd_psnr"], p["naive"]["bd_psnr"])]
    assert f["target_bd_psnr_gap_mean"] == (pytest.approx(np.mean(psnr_gaps)) if psnr_gaps
                                            else None)
    affine_gaps = [p["gap_cawf_affine"] for p in sd["per_seed"]
                   if p["gap_cawf_affine"] is not None]
    assert f["target_gap_cawf_affine_mean"] == (pytest.approx(np.mean(affine_gaps))
                                                if affine_gaps else None)
    assert "CAwF+affine" in (tmp_path / "out" / "experiments_tables.md").read_text()


def test_parameter_counts_match_the_papers_table_3():
    p = sections.parameters()
    assert p["base"] == p["paper"]["base"]
    assert p["cawf"] == p["paper"]["cawf"]
    assert p["cawf_affine_adapter_stored"] - p["cawf_adapter_stored"] == 1_126


def _curve(name, points):
    return {"name": name, "points": [{"setting": name, "bpp": b, "psnr": p} for b, p in points]}


def test_rebaseline_measures_only_the_jpeg2000_rows_again_from_stored_curves():
    from nicodec.errors import NicodecError
    from study.rebaseline import rebaseline

    joint = _curve("joint", [(0.2, 30), (0.4, 32), (0.6, 33.5), (0.8, 34.5)])
    naive = _curve("naive_photo_astro_nall", [(0.2, 29.5), (0.4, 31.5), (0.6, 33), (0.8, 34)])
    old = _curve("jpeg2000", [(0.2, 28), (0.4, 30), (0.6, 31.5), (0.8, 32.5)])
    new = _curve("jpeg2000", [(0.2, 31), (0.4, 33), (0.6, 34.5), (0.8, 35.5)])
    other = {"method": "naive", "domain": "astro", "bd_rate": 1.0, "bd_psnr": 0.1}
    results = {
        "table2": [{"pair": "photo->astro", "rows": [
            dict(other), {"method": "jpeg2000", "domain": "astro", "bd_rate": 5.0,
                          "bd_psnr": -0.5}],
            "curves": {"astro": {"joint": joint, "naive": naive, "jpeg2000": old}}}],
        "table1": [{"pair": "photo->astro", "reference": "naive_photo_astro_nall",
                    "rows": [{"method": "jpeg2000", "n": 0, "bd_rate": 5.0, "bd_psnr": 0}],
                    "curves": {}}]}

    class Lab:
        def jpeg2000(self, domain):
            assert domain == "astro"
            return new

    out = rebaseline(results, Lab())
    t2 = out["table2"][0]
    assert t2["rows"][0] == other  # nothing but JPEG 2000 moves
    assert t2["curves"]["astro"]["jpeg2000"] == new
    assert {k: t2["rows"][1][k] for k in ("bd_rate", "bd_psnr")} == sections.bd(joint, new)
    assert t2["rows"][1]["bd_rate"] < 0  # 3 dB better than the joint model: fewer bits
    t1 = out["table1"][0]["rows"][0]
    assert {k: t1[k] for k in ("bd_rate", "bd_psnr")} == sections.bd(naive, new)
    assert results["table2"][0]["curves"]["astro"]["jpeg2000"] == old  # input untouched

    results["table1"][0]["reference"] = "naive_photo_astro_n10"
    with pytest.raises(NicodecError, match="reference"):
        rebaseline(results, Lab())
