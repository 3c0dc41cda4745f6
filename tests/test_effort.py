"""Encoder effort and rate control: smaller files (or files of a chosen size) that the
unchanged decoder reads; effort 1 stays byte-identical to what every release wrote."""

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from nicodec import api, container, effort, metrics, ratecontrol, registry
from nicodec.cli import main
from nicodec.effort import Effort
from nicodec.errors import NicodecError

COMPAT = Path(__file__).parent / "compat" / "v0.1"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture()
def shipped(tmp_path, monkeypatch):
    monkeypatch.delenv("NICODEC_MODELS", raising=False)
    monkeypatch.setenv("NICODEC_HOME", str(tmp_path))
    return registry.Registry()


@pytest.fixture(scope="module")
def photo():
    """A small natural image (200x136): what 0.1's q4 decoded from a photo."""
    return np.asarray(Image.open(COMPAT / "photo-q4.png").convert("RGB"))


def test_effort_1_is_byte_identical_to_plain_encoding(shipped, photo, tmp_path):
    codec = shipped.codec(quality=3)
    assert effort.encode(codec, photo, level=1) == codec.encode(photo)
    Image.fromarray(photo).save(tmp_path / "p.png")
    assert run("encode", tmp_path / "p.png", "-o", tmp_path / "a.nic").exit_code == 0
    assert run("encode", tmp_path / "p.png", "-o", tmp_path / "b.nic", "--effort", 1
               ).exit_code == 0
    assert (tmp_path / "a.nic").read_bytes() == (tmp_path / "b.nic").read_bytes() == \
        codec.encode(photo, step="auto")  # the grid quantstep picks, by default
    assert run("encode", tmp_path / "p.png", "-o", tmp_path / "c.nic", "--step", 0
               ).exit_code == 0
    assert (tmp_path / "c.nic").read_bytes() == codec.encode(photo)
    assert effort.encode(codec, photo, level=1, step="auto") == codec.encode(photo, step="auto")


@pytest.mark.parametrize("level", [2, 3, 4])
def test_refined_file_decodes_unchanged_and_costs_less(shipped, photo, level):
    codec = shipped.codec(quality=3)
    plain = codec.encode(photo)
    refined = effort.encode(codec, photo, level=level)
    h1, _ = container.parse(plain)
    h2, payload = container.parse(refined)
    assert (h2.base_id, h2.adapter_id, h2.quality) == (h1.base_id, h1.adapter_id, h1.quality)
    # the unchanged decoding path: the codec the header names, as any release finds it
    decoded = shipped.codec_for_header(h2).decode(h2, payload)
    assert decoded.shape == photo.shape
    # never worse; the longest search finds a better file on this photo
    assert api.rd_cost(codec, photo, refined) <= api.rd_cost(codec, photo, plain)
    if level == max(effort.EFFORTS):
        assert refined != plain
        assert api.rd_cost(codec, photo, refined) < api.rd_cost(codec, photo, plain)


def test_unknown_effort_is_one_clear_error(env, tmp_path):
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "z.png")
    r = run("encode", tmp_path / "z.png", "--effort", 9)
    assert r.exit_code == 2 and "effort must be one of 1, 2, 3, 4" in r.output
    with pytest.raises(NicodecError, match="effort must be one of"):
        effort.effort(0)


def test_deadzone_zero_is_plain_rounding_and_shrinks_towards_zero():
    r = np.array([-2.6, -1.4, -0.6, -0.4, 0.0, 0.4, 0.6, 1.5, 2.6], np.float32)
    assert np.array_equal(ratecontrol.deadzone(r, 0.0), np.round(r).astype(np.int32))
    shrunk = ratecontrol.deadzone(r, 0.3)
    assert np.array_equal(shrunk, [-2, -1, 0, 0, 0, 0, 0, 1, 2])
    assert np.all(np.abs(ratecontrol.deadzone(r, 1.0)) <= np.abs(shrunk))


def test_target_bpp_lands_within_three_percent(shipped, photo, tmp_path):
    q1, q2 = (len(shipped.codec(quality=q).encode(photo)) * 8 / photo[..., 0].size
              for q in (1, 2))
    for target in (0.5 * (q1 + q2), 0.9 * q1, q2):
        data = api.Encoder(target_bpp=target, registry=shipped).compress(photo)
        bpp = 8 * len(data) / photo[..., 0].size
        assert abs(bpp / target - 1) <= ratecontrol.TOLERANCE, (target, bpp)
        header, payload = container.parse(data)
        assert shipped.codec_for_header(header).decode(header, payload).shape == photo.shape


def test_target_bpp_lands_on_a_grid_where_that_beats_the_dead_zone(shipped, photo):
    """Rate control may land each quality on another grid (format version 3): within the
    tolerance, never below the unit grid's PSNR (that landing is one it weighs), above it
    where the unit grid needs a large dead zone; ``step=0`` keeps the unit grid."""
    codecs = [shipped.codec(quality=q) for q in shipped.qualities()]
    q1, q2 = (len(c.encode(photo)) * 8 / photo[..., 0].size for c in codecs[:2])
    gains = []
    for target in (0.5 * (q1 + q2), 0.9 * q1, 1.3 * q1):
        unit = ratecontrol.to_bpp(codecs, photo, target, grids=False)
        got = ratecontrol.to_bpp(codecs, photo, target)
        assert unit.step == 0 and abs(got.bpp / target - 1) <= ratecontrol.TOLERANCE
        assert got.psnr >= unit.psnr
        gains.append(got.psnr - unit.psnr)
        header, payload = container.parse(got.data)
        assert (header.step, header.version == 3) == (got.step, got.step != 0)
        rec = shipped.codec_for_header(header).decode(header, payload)
        assert metrics.psnr(photo, rec) == pytest.approx(got.psnr)
        data = api.Encoder(target_bpp=target, registry=shipped).compress(photo)
        assert data == got.data
        data = api.Encoder(target_bpp=target, registry=shipped, step=0).compress(photo)
        assert data == unit.data and container.parse(data)[0].version != 3
    assert max(gains) > 0.1, gains


def test_target_bpp_out_of_reach_is_one_error_line_and_no_file(shipped, photo, tmp_path):
    Image.fromarray(photo).save(tmp_path / "p.png")
    for target in ("40", "0.0001"):
        r = run("encode", tmp_path / "p.png", "-o", tmp_path / "x.nic", "--target-bpp", target)
        assert r.exit_code == 1 and "out of reach" in r.stderr, r.output
        assert "no quantisation grid of any quality reaches it either" in r.stderr
        assert r.stderr.count("error:") == 1 and "Traceback" not in r.output
        assert not (tmp_path / "x.nic").exists()


def test_target_psnr_gives_the_smallest_file_that_reaches_it(shipped, photo):
    codec = shipped.codec(quality=2)
    plain = codec.encode(photo)
    target = api_psnr(shipped, plain, photo) - 0.3
    data = api.Encoder(target_psnr=target, registry=shipped).compress(photo)
    assert api_psnr(shipped, data, photo) >= target
    assert len(data) < len(plain)
    with pytest.raises(NicodecError, match="out of reach"):
        api.Encoder(target_psnr=80, registry=shipped).compress(photo)


def test_target_psnr_on_grids_is_never_larger_than_on_the_unit_grid(shipped, photo):
    codecs = [shipped.codec(quality=q) for q in shipped.qualities()]
    plain = [metrics.psnr(photo, c.decode(*container.parse(c.encode(photo)))) for c in codecs]
    smaller = 0
    for target in (plain[0] + 0.4, (plain[1] + plain[2]) / 2, plain[-1] + 0.2):
        got = ratecontrol.to_psnr(codecs, photo, target)
        if target > plain[-1]:  # beyond the unit grid's reach: a finer grid of q4
            with pytest.raises(NicodecError, match="out of reach"):
                ratecontrol.to_psnr(codecs, photo, target, grids=False)
            assert (got.codec.quality, got.step > 0) == (4, True)
            continue
        unit = ratecontrol.to_psnr(codecs, photo, target, grids=False)
        assert unit.step == 0 and len(got.data) <= len(unit.data)
        smaller += len(got.data) < len(unit.data)
        header, payload = container.parse(got.data)
        assert header.step == got.step
        rec = shipped.codec_for_header(header).decode(header, payload)
        assert metrics.psnr(photo, rec) == pytest.approx(got.psnr) and got.psnr >= target
        assert api.Encoder(target_psnr=target, registry=shipped).compress(photo) == got.data
        assert api.Encoder(target_psnr=target, registry=shipped,
                           step=0).compress(photo) == unit.data
    assert smaller == 2


def api_psnr(reg, data, rgb):
    from nicodec import metrics

    header, payload = container.parse(data)
    return metrics.psnr(rgb, reg.codec_for_header(header).decode(header, payload))


def test_eval_measures_each_effort_on_the_files_encode_writes(shipped, photo, tmp_path):
    """`eval --effort 1,3`: one curve per effort, named after it, whose bpp are the sizes of
    the files `effort.encode` writes, and compared with each other by BD-rate."""
    import json

    d = tmp_path / "imgs"
    d.mkdir()
    Image.fromarray(photo).save(d / "p.png")
    r = run("eval", d, "--qualities", "2,3", "--effort", "1,3", "--baselines", "none",
            "--json", tmp_path / "r.json")
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "r.json").read_text())
    assert [c["name"] for c in res["curves"]] == ["nicodec:photo", "nicodec:photo@effort3"]
    pixels = photo.shape[0] * photo.shape[1]
    for curve, level in zip(res["curves"], (1, 3)):
        for q, point in zip((2, 3), curve["points"]):
            blob = effort.encode(shipped.codec(quality=q), photo, level=level, step="auto")
            assert point["bpp"] == pytest.approx(8 * len(blob) / pixels)
    assert res["comparisons"][0]["test"] == "nicodec:photo@effort3"
    bad = run("eval", d, "--effort", "1,1")
    assert bad.exit_code == 2 and "at most once" in bad.output
    # --step: one curve per grid, the unit grid's files those every release reads
    r = run("eval", d, "--qualities", "1", "--step", "auto,0", "--baselines", "none",
            "--json", tmp_path / "s.json")
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "s.json").read_text())
    assert [c["name"] for c in res["curves"]] == ["nicodec:photo", "nicodec:photo@step0"]
    unit = shipped.codec(quality=1).encode(photo)
    assert res["curves"][1]["points"][0]["bpp"] == pytest.approx(8 * len(unit) / pixels)


def test_the_bf16_search_keeps_nearly_all_of_the_float32_search_gain(shipped, photo):
    """Where bf16 is native the search's synthesis runs in it (elsewhere both are float32):
    its file must still be chosen by the real J and keep >= 90 % of float32's gain."""
    codec = shipped.codec(quality=3)
    e = effort.EFFORTS[3]
    plain = api.rd_cost(codec, photo, codec.encode(photo))
    gains = {}
    for bf16 in (True, False):
        effort.EFFORTS[999] = Effort(999, e.steps, e.method, e.lr, bf16=bf16)
        try:
            gains[bf16] = plain - api.rd_cost(codec, photo,
                                              effort.encode(codec, photo, level=999))
        finally:
            del effort.EFFORTS[999]
    assert gains[False] > 0
    assert gains[True] >= 0.9 * gains[False]
