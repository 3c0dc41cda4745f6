import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import smooth_image
from nicodec import metrics
from nicodec.cli import main

RATE = [0.1, 0.25, 0.5, 0.9]
PSNR = [26.0, 29.0, 32.0, 35.0]


METHODS = pytest.mark.parametrize("method", ["pchip", "cubic"])


@METHODS
def test_bd_rate_of_identical_curves_is_zero(method):
    assert metrics.bd_rate(RATE, PSNR, RATE, PSNR, method) == pytest.approx(0, abs=1e-9)


@METHODS
def test_bd_rate_of_ten_percent_more_rate_is_plus_ten(method):
    more, less = [r * 1.1 for r in RATE], [r * 0.9 for r in RATE]
    assert metrics.bd_rate(RATE, PSNR, more, PSNR, method) == pytest.approx(10)
    assert metrics.bd_rate(RATE, PSNR, less, PSNR, method) == pytest.approx(-10)


@METHODS
def test_bd_psnr_of_a_one_db_shift(method):
    shifted = [p + 1 for p in PSNR]
    assert metrics.bd_psnr(RATE, PSNR, RATE, shifted, method) == pytest.approx(1)


def test_bd_rate_of_a_shifted_irregular_curve_is_its_shift():
    """An uneven curve (a kink, as briefly trained codecs give) shifted by +1 dB: the shift
    at equal rate is exactly 1 dB whatever the shape, and at equal PSNR the test curve needs
    fewer bits. PCHIP gets 1 dB; so must any interpolation that passes through the points."""
    rate, psnr = [0.10, 0.27, 0.38, 0.48], [28.9, 31.7, 32.1, 32.7]
    up = [p + 1 for p in psnr]
    assert metrics.bd_psnr(rate, psnr, rate, up) == pytest.approx(1)
    assert metrics.bd_rate(rate, psnr, rate, up) < 0


def test_bd_rate_refuses_disjoint_curves():
    with pytest.raises(ValueError):
        metrics.bd_rate(RATE, PSNR, RATE, [p + 20 for p in PSNR])


def test_psnr():
    a = np.zeros((4, 4, 3), np.uint8)
    assert metrics.psnr(a, a) == 100.0
    assert metrics.psnr(a, a + 1) == pytest.approx(48.1308, abs=1e-3)


def test_eval_end_to_end_writes_json_and_plot(env):
    d = env / "imgs"
    d.mkdir()
    for i in range(2):
        Image.fromarray(smooth_image(40, 48, seed=i)).save(d / f"{i}.png")
    r = CliRunner().invoke(main, ["eval", str(d), "--qualities", "1,3", "--baselines",
                                  "jpeg2000", "--json", str(env / "r.json"), "--plot",
                                  str(env / "r.png")])
    assert r.exit_code == 0, r.output
    res = json.loads((env / "r.json").read_text())
    assert res["images"] == 2
    assert [c["name"] for c in res["curves"]] == ["nicodec:photo", "jpeg2000"]
    assert len(res["curves"][0]["points"]) == 2
    assert res["comparisons"][0]["test"] == "jpeg2000"
    assert Image.open(env / "r.png").format == "PNG"


def test_bd_rate_refuses_barely_overlapping_curves():
    with pytest.raises(ValueError, match="BD-PSNR"):
        metrics.bd_rate(RATE, PSNR, RATE, [p + 8.8 for p in PSNR])


# A reference whose rate doubles per dB: log r = log 0.1 + (p - 30) log 2 on [30, 33].
DOUBLING_RATE = [0.1, 0.2, 0.4, 0.8]
DOUBLING_PSNR = [30.0, 31.0, 32.0, 33.0]


def _one_db_better(psnrs):
    """Points of the curve that reaches every PSNR 1 dB cheaper than the doubling one."""
    return [0.1 * 2 ** (p - 31) for p in psnrs], list(psnrs)


@METHODS
def test_bd_rate_bound_of_a_curve_wholly_above(method):
    """Test points from 33.5 dB on: over the reference's [30, 33] the bound prices the test
    codec at its cheapest point, 0.1 * 2**2.5, against the reference's geometric mean rate
    0.1 * 2**1.5: +100 %. The curve those points come from is really 1 dB better, -50 %;
    the bound is above it, as a bound must be."""
    rate, psnr = _one_db_better([33.5, 34.0, 35.0, 36.0])
    bound = metrics.bd_rate_bound(DOUBLING_RATE, DOUBLING_PSNR, rate, psnr, method)
    assert bound == pytest.approx(100, rel=1e-6)
    full_rate, full_psnr = _one_db_better([30.0, 31.0, 32.0, 33.0, 34.0])
    true = metrics.bd_rate(DOUBLING_RATE, DOUBLING_PSNR, full_rate, full_psnr, method)
    assert true == pytest.approx(-50, rel=1e-6)
    assert true < bound


def test_bd_rate_bound_of_a_much_better_codec_is_strongly_negative():
    """The cheapest test point costs as much as the reference's cheapest: the bound is the
    mean of log(0.1 / r_ref) over [30, 33], 2**-1.5 - 1 = -64.6 %."""
    bound = metrics.bd_rate_bound(DOUBLING_RATE, DOUBLING_PSNR, [0.1, 0.3], [40.0, 42.0])
    assert bound == pytest.approx((2 ** -1.5 - 1) * 100, rel=1e-6)


def test_bd_rate_bound_ignores_dominated_reference_points():
    """A reference point beaten in both rate and PSNR by another can only make the reference
    look costlier; the bound leaves it out, so adding one changes nothing."""
    rate, psnr = [0.1, 0.3], [40.0, 42.0]
    plain = metrics.bd_rate_bound(DOUBLING_RATE, DOUBLING_PSNR, rate, psnr)
    with_bad = metrics.bd_rate_bound(DOUBLING_RATE + [0.7], DOUBLING_PSNR + [31.5], rate, psnr)
    assert with_bad == pytest.approx(plain, rel=1e-9)


def test_bd_rate_bound_refuses_what_bd_rate_can_measure():
    with pytest.raises(ValueError, match="use bd_rate"):
        metrics.bd_rate_bound(DOUBLING_RATE, DOUBLING_PSNR, DOUBLING_RATE,
                              [p + 0.2 for p in DOUBLING_PSNR])
    with pytest.raises(ValueError, match="does not start above"):  # a worse codec: none
        metrics.bd_rate_bound(DOUBLING_RATE, DOUBLING_PSNR, DOUBLING_RATE,
                              [p - 5 for p in DOUBLING_PSNR])
    with pytest.raises(ValueError, match="needs 0.5 dB"):  # a reference span too short
        metrics.bd_rate_bound([0.1, 0.2], [30.0, 30.3], [0.1, 0.2], [31.0, 32.0])


def test_compare_gives_the_bound_where_bd_rate_is_undefined():
    from nicodec.evaluate import compare

    ref = {"name": "ref", "points": [{"bpp": r, "psnr": p}
                                     for r, p in zip(DOUBLING_RATE, DOUBLING_PSNR)]}
    above = {"name": "test", "points": [{"bpp": r, "psnr": p}
                                        for r, p in zip([0.1, 0.3], [40.0, 42.0])]}
    (row,) = compare([ref, above])
    assert row["bd_rate"] is None
    assert row["bd_rate_bound"] == pytest.approx((2 ** -1.5 - 1) * 100, rel=1e-6)
    assert "bd_rate_bound" in row["note"]
    (same,) = compare([ref, ref])
    assert same["bd_rate"] == pytest.approx(0, abs=1e-9) and "bd_rate_bound" not in same


def test_compare_keeps_bd_psnr_when_bd_rate_is_refused():
    """A flat reference (as the photo codec on screenshots) overlaps a better curve too little
    in PSNR for a BD-rate, but the BD-PSNR at equal rate is still defined and reported."""
    from nicodec.evaluate import compare

    flat = {"name": "ref", "points": [{"bpp": r, "psnr": 20 + 0.1 * i}
                                      for i, r in enumerate(RATE)]}
    better = {"name": "test", "points": [{"bpp": r, "psnr": 22 + 0.1 * i}
                                         for i, r in enumerate(RATE)]}
    (row,) = compare([flat, better])
    assert row["bd_rate"] is None and "BD-PSNR" in row["note"]
    assert row["bd_psnr"] == pytest.approx(2)


def test_bd_text_says_when_a_figure_is_only_a_bound():
    from nicodec.cli import _bd_text

    assert _bd_text({"bd_rate": -12.345}) == "-12.35 %"
    assert _bd_text({"bd_rate": None, "bd_rate_bound": -38.576}).startswith("<= -38.58 % (a bound")
    assert _bd_text({"bd_rate": None}).startswith("n/a")
