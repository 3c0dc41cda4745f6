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


class _Curve:
    """A stand-in for ratecontrol._Image: one quantity per grid (``value(e)``) or per dead
    zone (``psnr(t)``), counting what the searches ask for."""

    def __init__(self, value, step=0, asked=None):
        self.value, self.step = value, step
        self.asked = [] if asked is None else asked

    def on_grid(self, e):
        return _Curve(self.value, e, self.asked)

    def at(self):
        self.asked.append(self.step)
        return self.value(self.step)

    def psnr(self, t):
        self.asked.append(t)
        return self.value(t)


def _walk(value, target, lo=-8, hi=12):
    """0.19's search: one grid at a time from the unit grid."""
    e = 0
    if value(0) >= target:
        while e > lo and value(e - 1) >= target:
            e -= 1
        return e
    while e < hi:
        e += 1
        if value(e) >= target:
            return e
    return None


@pytest.mark.parametrize("value", [lambda e: 30 + 0.37 * e,
                                   lambda e: np.log(0.2) + 0.1 * e + 0.004 * e * e,
                                   lambda e: 30 + 2 * np.tanh(e / 4)])
def test_the_coarsest_grid_is_the_walks_and_tries_few_grids(value):
    """The interpolation search finds the grid the one-grid-at-a-time walk finds, on
    increasing curves of many shapes, targets anywhere (out of reach too), in few tries."""
    tries = []
    for target in np.linspace(value(-9), value(13), 97):
        img = _Curve(value)
        found = ratecontrol._coarsest_grid(img, lambda g: g.at(), target)
        assert (None if found is None else found.step) == _walk(value, target), target
        tries.append(len(set(img.asked)))
        walk = abs(_walk(value, target) or 12) + 2
        assert len(set(img.asked)) <= max(4, walk)
    assert np.mean(tries) < 5


def test_the_grid_search_does_not_fly_over_a_flat_top():
    """A screenshot's q4 PSNR on its finest grids (measured): flat, and not monotone. The
    search steps at most MAX_JUMP grids past those tried, so it finds the walk's grid, 6,
    not the 10 that a free line through grids 0 and 3 reaches."""
    psnr = [24.9773, 24.9046, 24.9744, 24.9831, 24.9909, 24.9792, 24.9991, 24.9891, 25.01,
            24.9984, 25.0086, 25.0157, 25.0105]
    value = lambda e: psnr[e] if e >= 0 else 24.0 + 0.1 * e  # noqa: E731
    found = ratecontrol._coarsest_grid(_Curve(value), lambda g: g.at(), 24.999)
    assert found.step == _walk(value, 24.999) == 6


def test_the_largest_dead_zone_keeps_the_target_in_a_third_of_the_syntheses():
    """The dead zone search (false position) keeps the target, lands within the bisection's
    resolution or PSNR_SLACK of it, and asks for fewer PSNRs than 12 bisection steps."""
    for scale in (0.5, 2.0, 8.0):
        curve = lambda t: 36.0 - scale * t - 0.3 * t * t  # noqa: E731 - decreasing in t
        for target in (35.99, 35.5, 34.0, 31.0):
            img = _Curve(curve)
            t = ratecontrol._largest_deadzone(img, target, ratecontrol.MAX_DEADZONE, 12)
            assert curve(t) >= target
            resolution = ratecontrol.MAX_DEADZONE / 2 ** 12
            assert curve(t + resolution) < target or curve(t) - target <= ratecontrol.PSNR_SLACK
            assert len(set(img.asked)) <= 8, (scale, target, sorted(set(img.asked)))


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


def test_a_sample_spreads_tiles_over_a_large_image_only():
    big = np.random.default_rng(0).integers(0, 256, (3000, 4000, 3), dtype=np.uint8)
    assert ratecontrol.sample(big[:1024, :1024]) is None
    part = ratecontrol.sample(big)
    t = ratecontrol.SAMPLE_TILE
    assert part.shape == (3 * t, 5 * t, 3)  # 15 tiles of a 4:3 image: about SAMPLE_TILES
    assert np.array_equal(part[:t, :t], big[:t, :t])  # the first tile is the top-left
    y, x = (3000 - t) // 16 * 16, (4000 - t) // 16 * 16
    assert np.array_equal(part[-t:, -t:], big[y:y + t, x:x + t])  # the last, bottom-right
    thin = ratecontrol.sample(np.zeros((100, 12000, 3), np.uint8))  # a panorama
    assert thin.shape == (100, ratecontrol.SAMPLE_TILES * t, 3)  # one row of short tiles


def _count_whole(monkeypatch, cls, method: str, big: np.ndarray) -> list:
    """A list that grows by one each time ``cls.method(q, a, b, ...)`` runs on the whole of
    ``big`` (a and b its height and width, in either order: reconstruct and encode_latents
    differ)."""
    calls, original = [], getattr(cls, method)

    def counted(self, q, a, b, *args, **kwargs):
        if sorted((a, b)) == sorted(big.shape[:2]):
            calls.append(1)
        return original(self, q, a, b, *args, **kwargs)

    monkeypatch.setattr(cls, method, counted)
    return calls


def test_a_large_image_chooses_on_its_sample_and_lands_the_whole(shipped, photo, monkeypatch):
    """Rate control on an image over SAMPLE_SIDE squared pixels chooses its quality and
    grid on the sample, then lands the whole image in a few whole-image syntheses: the
    file still meets the target, and decodes to the PSNR it reports."""
    from nicodec.bench import _mirrored
    from nicodec.codec import Codec

    big = _mirrored(photo, 400, 544)
    codecs = [shipped.codec(quality=q) for q in shipped.qualities()]
    plain = [metrics.psnr(big, c.decode(*container.parse(c.encode(big)))) for c in codecs]
    sizes = [8 * len(c.encode(big)) / big[..., 0].size for c in codecs]
    whole_syntheses = _count_whole(monkeypatch, Codec, "reconstruct", big)
    monkeypatch.setattr(ratecontrol, "SAMPLE_TILE", 64)
    counts = {}
    for side in (1 << 20, 256):  # the whole image alone, then a sample of 15 tiles
        monkeypatch.setattr(ratecontrol, "SAMPLE_SIDE", side)
        whole_syntheses.clear()
        got = ratecontrol.to_psnr(codecs, big, (plain[1] + plain[2]) / 2)
        counts[side] = len(whole_syntheses)
        header, payload = container.parse(got.data)
        rec = shipped.codec_for_header(header).decode(header, payload)
        assert metrics.psnr(big, rec) == pytest.approx(got.psnr)
        assert got.psnr >= (plain[1] + plain[2]) / 2
        target = float(np.sqrt(sizes[0] * sizes[1]))
        got = ratecontrol.to_bpp(codecs, big, target)
        assert abs(got.bpp / target - 1) <= ratecontrol.TOLERANCE
        assert 8 * len(got.data) / big[..., 0].size == pytest.approx(got.bpp)
    assert 3 * counts[256] <= counts[1 << 20], counts  # 8 against 32 when written
    # a PSNR out of every quality's reach: the same one error, in a few whole syntheses
    errors = []
    for side in (1 << 20, 256):
        monkeypatch.setattr(ratecontrol, "SAMPLE_SIDE", side)
        whole_syntheses.clear()
        with pytest.raises(NicodecError, match="out of reach") as refused:
            ratecontrol.to_psnr(codecs, big, 90.0)
        errors.append((str(refused.value), len(whole_syntheses)))
    assert errors[0][0] == errors[1][0], errors
    assert errors[1][1] <= 4 < errors[0][1], errors


def test_a_large_image_refuses_an_unreachable_rate_early(shipped, photo, monkeypatch):
    """A --target-bpp above every quality's reach, or below it, on an image that chooses
    on a sample: the error line of the full search on the whole image, after a few
    whole-image encodes instead of the full search's."""
    from nicodec.bench import _mirrored
    from nicodec.codec import Codec

    big = _mirrored(photo, 400, 544)
    codecs = [shipped.codec(quality=q) for q in shipped.qualities()]
    whole_encodes = _count_whole(monkeypatch, Codec, "encode_latents", big)
    monkeypatch.setattr(ratecontrol, "SAMPLE_TILE", 64)
    for target, grids in ((40.0, True), (0.0001, True), (40.0, False)):
        errors = []
        for side in (1 << 20, 256):  # the whole image alone, then a sample of 15 tiles
            monkeypatch.setattr(ratecontrol, "SAMPLE_SIDE", side)
            whole_encodes.clear()
            with pytest.raises(NicodecError, match="out of reach") as refused:
                ratecontrol.to_bpp(codecs, big, target, grids=grids)
            errors.append((str(refused.value), len(whole_encodes)))
        assert errors[0][0] == errors[1][0], errors
        assert ("either" in errors[0][0]) == grids, errors
        if grids:  # the full search walks each quality's grids; the refusal asks one each
            assert errors[1][1] <= len(codecs) + 3, errors  # 5 and 7 against 24 and 21
            assert 3 * errors[1][1] <= errors[0][1], errors


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
