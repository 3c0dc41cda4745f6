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
