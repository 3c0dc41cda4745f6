"""Quantisation steps (format version 3): the header, exact integer rescaling, round trips
on other grids for the hyperprior and context coders, the encoder's choice, and refusals."""

import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from conftest import smooth_image
from nicodec import container, quantstep, registry
from nicodec import hyperprior as hp
from nicodec.cli import main
from nicodec.errors import NicodecError
from test_context import context_models, seeded  # noqa: F401  (a module fixture)


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture()
def reg(context_models, tmp_path, monkeypatch):  # noqa: F811
    """Generations 1 (factorized), 2 (hyperprior) and 3 (+ context) of one quality."""
    monkeypatch.setenv("NICODEC_MODELS", str(context_models))
    monkeypatch.setenv("NICODEC_HOME", str(tmp_path / "home"))
    return registry.Registry()


def _codec(reg, generation):
    entry = next(m for m in reg.bases() if m.generation == generation)
    return reg.codec_by_id(entry.id)


def test_the_header_says_step_and_tiling_in_version_3_only():
    base = dict(quality=1, channels=3, width=40, height=24, base_id=7)
    for tiled in (False, True):
        for step in (0, 5, -3, 24):
            data = container.pack(container.Header(**base, **container.layout(tiled, step)),
                                  b"\0\0\0\1")
            h, _ = container.parse(data)
            assert (h.step, h.tiled) == (step, tiled)
            assert h.version == (3 if step else 2 if tiled else 1)
    for version, flags in ((1, 3), (2, 1), (3, 0), (3, 0x100), (3, 0x205)):
        data = container.pack(container.Header(**base, version=version, flags=flags), b"")
        with pytest.raises(NicodecError, match="invalid header fields"):
            container.parse(data)


def test_rescaling_is_exact_integer_arithmetic():
    rng = np.random.default_rng(0)
    v = rng.integers(-2 ** 36, 2 ** 36, 2000)
    for e in (-24, -3, -1, 1, 7, 24):
        mult = round(hp.step_ratio() ** e * 2 ** hp.STEP_BITS)
        want = [(int(x) * mult + 2 ** (hp.STEP_BITS - 1)) // 2 ** hp.STEP_BITS for x in v]
        assert hp.rescale(torch.from_numpy(v), e).tolist() == want
    # a step's Gaussians are the unit grid's, their scale index moved by e
    assert hp.step_ratio() == pytest.approx(hp.scales()[1] / hp.scales()[0], rel=1e-12)


@pytest.mark.parametrize("with_context", [False, True])
def test_latents_on_any_grid_round_trip_and_only_with_their_step(with_context):
    hyper = hp.export_tensors(seeded(seed=3))
    if not with_context:
        hyper = {k: v for k, v in hyper.items() if not k.startswith("ctx.")}
    coder = hp.HyperCoder({"median": torch.zeros(8)}, hyper)
    assert (coder.context is not None) == with_context
    r = torch.randn(8, 12, 20) * 3
    sizes = {}
    for e in (-6, -2, 0, 3, 9):
        q = torch.round(r / hp.step_size(e)).to(torch.int32).numpy()
        data = coder.encode(q, e)
        assert np.array_equal(coder.decode(data, q.shape, step=e), q)
        assert coder.ideal_bits(q, e) > 0
        sizes[e] = len(data)
        if e:
            with pytest.raises(NicodecError):  # the unit grid's tables do not decode it
                coder.decode(data, q.shape)
    assert sizes[-6] < sizes[0] < sizes[9]  # finer grids cost more
    with pytest.raises(ValueError, match="outside"):
        coder.encode(q, hp.MAX_STEP + 1)


def test_a_codec_writes_steps_as_version_3_and_decodes_them_to_its_pixels(reg, tmp_path):
    img = smooth_image(56, 72, seed=4)
    for generation in (2, 3):
        codec = _codec(reg, generation)
        assert codec.steps
        unit = codec.encode(img)
        assert container.parse(unit)[0].version == 1 and unit == codec.encode(img, step=0)
        for e in (-3, 4):
            data = codec.encode(img, step=e)
            header, payload = container.parse(data)
            assert (header.version, header.step) == (3, e)
            want = codec.reconstruct(codec.latents(img, e), 56, 72, step=e)
            assert np.array_equal(codec.decode(header, payload), want)
            assert not np.array_equal(want, codec.reconstruct(codec.latents(img), 56, 72))
    factorized = _codec(reg, 1)
    assert not factorized.steps
    with pytest.raises(NicodecError, match="unit grid only"):
        factorized.encode(img, step=2)
    # a version-3 file naming the factorized model: refused, one line
    stepped = bytearray(_codec(reg, 2).encode(img, step=2))
    stepped[7] = 1  # the factorized model's coder, so only the step is wrong
    stepped[16:20] = factorized.base_id.to_bytes(4, "little")
    head = bytes(stepped[:28])
    crc = container.zlib.crc32(bytes(stepped[32:]), container.zlib.crc32(head))
    stepped[28:32] = crc.to_bytes(4, "little")
    (tmp_path / "x.nic").write_bytes(bytes(stepped))
    r = run("decode", tmp_path / "x.nic", "-o", tmp_path / "x.png")
    assert r.exit_code == 1 and r.output.startswith("error:") and "quantisation step" in r.output
    assert not (tmp_path / "x.png").exists()


def test_the_encoder_picks_the_grid_by_its_exchange_rate(reg, monkeypatch):
    """A grid that no neighbour beats, coarser where bits cost more decibels; none without
    a slope."""
    img = smooth_image(64, 96, seed=5)
    codec = _codec(reg, 3)
    assert codec.step_slope is None and quantstep.choose(codec, img)[0] == 0
    r = codec.residual(img)
    chosen = {}
    for slope in (1e4, 30.0, 1e-4):
        codec.step_slope = slope
        e, q = quantstep.choose(codec, img)
        assert np.array_equal(q, codec.latents(img, e))
        best = quantstep.score(codec, r, img, e)[0]
        for x in (e - 1, e + 1):
            if quantstep.SEARCH[0] <= x <= quantstep.SEARCH[1]:
                assert quantstep.score(codec, r, img, x)[0] <= best
        chosen[slope] = e
    assert chosen[1e4] < 0 < chosen[1e-4]
    # a large image picks its grid on tiles spread over it, then codes all of it on that
    # grid: the grid no neighbour beats on the tiles' rate and PSNR
    big = smooth_image(384, 512, seed=9)
    monkeypatch.setattr(quantstep, "SAMPLE_SIDE", 256)
    monkeypatch.setattr(quantstep, "SAMPLE_TILE", 128)
    monkeypatch.setattr(quantstep, "SAMPLE_TILES", 4)
    codec.step_slope = 30.0
    e, q = quantstep.choose(codec, big)
    tiles = quantstep.TileSample(codec, big)
    assert len(tiles.parts) == 4 and tiles.pixels == 4 * 128 * 128  # 2 x 2
    assert tiles.parts[-1][0].shape == (192, 192, 3)  # a corner tile and its halo inwards
    for x in (e - 1, e + 1):
        assert tiles.score(x) <= tiles.score(e)
    assert np.array_equal(q, codec.latents(big, e))


def test_windows_count_their_own_latents_and_side_information(reg):
    """ideal_bits over windows that split the latents on z's grid add up to the whole's;
    a tile sample of one tile as large as the image is the image's own point."""
    img = smooth_image(128, 192, seed=8)
    for generation in (2, 3):  # a hyperprior, and one with a context model
        codec = _codec(reg, generation)
        for e in (0, 3):
            q = codec.latents(img, e)
            whole = codec.coder.ideal_bits(q, e)
            parts = [codec.coder.ideal_bits(q, e, (t, left, t + 4, left + w))
                     for t in (0, 4) for left, w in ((0, 8), (8, 4))]
            assert sum(parts) == pytest.approx(whole, rel=1e-9)
            assert min(parts) > 0
    codec.step_slope = 30.0
    with pytest.MonkeyPatch.context() as m:
        m.setattr(quantstep, "SAMPLE_TILE", 1024)
        one = quantstep.TileSample(codec, img)
    assert len(one.parts) == 1 and one.pixels == 128 * 192
    r = codec.residual(img)
    for e in (-2, 0, 5):
        assert one.point(e) == pytest.approx(quantstep.point(codec, r, img, e)[:2], rel=1e-12)


def test_tiles_spread_over_the_image_on_their_grid():
    corners = quantstep.tile_corners(3000, 4000, align=64)
    assert len(corners) == 15  # a 4:3 image: 3 rows of 5, about SAMPLE_TILES
    assert corners[0] == (0, 0, 256, 256)
    assert all(y % 64 == 0 and x % 64 == 0 for y, x, _, _ in corners)
    assert max(y for y, *_ in corners) + 256 > 3000 - 64  # the last reach the far edges
    assert max(x for _, x, *_ in corners) + 256 > 4000 - 64
    assert quantstep.tile_corners(100, 12000)[0][2:] == (100, 256)  # a panorama's strip
    tall = quantstep.tile_corners(12000, 100)  # and a tall one: as many tiles (0.20: 44)
    assert len(tall) == quantstep.SAMPLE_TILES and tall[0][2:] == (256, 100)


def test_the_slope_is_the_mean_curves_between_two_grids(reg):
    codec = _codec(reg, 3)
    imgs = [smooth_image(48, 64, seed=s) for s in (6, 7)]
    pts = {e: np.mean([quantstep.point(codec, codec.residual(i), i, e)[:2] for i in imgs], 0)
           for e in (-2, 2)}
    assert pts[2][0] > pts[-2][0]  # a finer grid costs more bits
    want = (pts[2][1] - pts[-2][1]) / (pts[2][0] - pts[-2][0])
    assert quantstep.slope(codec, imgs) == pytest.approx(want, rel=1e-9)


def test_an_adapters_slope_is_measured_on_central_crops_of_its_training_images(
        reg, tmp_path, monkeypatch):
    codec = _codec(reg, 2)
    files = []
    for s in range(5):
        files.append(tmp_path / f"t{s}.png")
        Image.fromarray(smooth_image(40 + 8 * s, 48 + 16 * s, seed=s)).save(files[-1])
    monkeypatch.setattr(quantstep, "SLOPE_IMAGES", 2)
    monkeypatch.setattr(quantstep, "SLOPE_SIDE", 32)
    crops = [quantstep.central_crop(np.asarray(Image.open(f)), 32) for f in files[::2][:2]]
    assert [c.shape[:2] for c in crops] == [(32, 32)] * 2
    assert np.array_equal(crops[1], np.asarray(Image.open(files[2]))[0:32, 16:48])
    want = quantstep.slope(codec, crops)
    assert quantstep.adapter_slope(codec, files) == (round(want, 3) if want > 0 else None)
    for bad in (-1.0, 0.0, float("nan")):  # too briefly trained: the unit grid
        monkeypatch.setattr(quantstep, "slope", lambda c, i, b=bad: b)
        assert quantstep.adapter_slope(codec, files) is None


def test_encode_step_option(context_models, tmp_path, monkeypatch):  # noqa: F811
    models = tmp_path / "models"
    shutil.copytree(context_models, models)  # the manifest is written to
    monkeypatch.setenv("NICODEC_MODELS", str(models))
    monkeypatch.setenv("NICODEC_HOME", str(tmp_path / "home"))
    Image.fromarray(smooth_image(40, 56)).save(tmp_path / "i.png")
    g3 = next(m for m in registry.Registry().bases() if m.generation == 3)
    assert registry.set_step_slope(g3.id, 25.0, "test").step_slope == 25.0
    assert registry.Registry().codec(quality=1).step_slope == 25.0
    out = {}
    for step in ("auto", "0", "5"):
        r = run("encode", tmp_path / "i.png", "-o", tmp_path / f"s{step}.nic", "-q", 1,
                "--step", step)
        assert r.exit_code == 0, r.output
        out[step] = container.parse((tmp_path / f"s{step}.nic").read_bytes())[0]
        assert run("decode", tmp_path / f"s{step}.nic", "-o", tmp_path / f"{step}.png"
                   ).exit_code == 0
    assert (out["0"].version, out["5"].version, out["5"].step) == (1, 3, 5)
    from nicodec import api

    for step, version in ((5, 3), (0, 1)):
        data = api.compress(smooth_image(40, 56), quality=1, step=step, device="cpu")
        assert container.parse(data)[0].version == version
    info = run("info", tmp_path / "s5.nic")
    assert "step exponent 5" in info.output and "format version  3" in info.output
    for bad, needle in (("x", "'auto' or an integer"), ("99", "step must be 'auto' or an "
                                                            "integer -24..24")):
        r = run("encode", tmp_path / "i.png", "-o", tmp_path / "b.nic", "-q", 1, "--step", bad)
        assert r.exit_code != 0 and needle in r.output, r.output
        assert not (tmp_path / "b.nic").exists()


def test_a_step_on_a_factorized_model_is_one_error_line_and_no_file(env):
    """``env``: generation-1 models only (factorized): the unit grid is all they code."""
    Image.fromarray(smooth_image(40, 56)).save(env / "i.png")
    for effort in (1, 2):
        r = run("encode", env / "i.png", "-o", env / "x.nic", "-q", 1, "--step", 3,
                "--effort", effort)
        assert r.exit_code == 1 and r.output.startswith("error: --step 3: photo q1 codes its "
                                                        "latents on the unit grid only"), r.output
        assert len(r.output.strip().splitlines()) == 1 and not (env / "x.nic").exists()
    assert run("encode", env / "i.png", "-o", env / "y.nic", "-q", 1).exit_code == 0
