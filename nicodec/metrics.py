"""Rate and distortion measures: bpp, RGB PSNR, and Bjøntegaard deltas between RD curves."""

from __future__ import annotations

import math

import numpy as np


def bpp(n_bytes: int, width: int, height: int) -> float:
    """Bits per pixel of a file of ``n_bytes`` for a width x height image."""
    return 8.0 * n_bytes / (width * height)


def mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared error of two uint8 images on the 0..255 scale, all channels."""
    return float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """RGB PSNR in dB (peak 255); 100 dB for identical images."""
    m = mse(a, b)
    return 100.0 if m == 0 else 10 * math.log10(255.0 ** 2 / m)


def _check(rate, dist):
    rate, dist = np.asarray(rate, np.float64), np.asarray(dist, np.float64)
    if len(rate) < 2 or len(rate) != len(dist):
        raise ValueError("an RD curve needs at least two (rate, distortion) points")
    if (rate <= 0).any():
        raise ValueError("rates must be positive")
    order = np.argsort(dist)
    return rate[order], dist[order]


def _integral(x, y, lo, hi, method: str) -> float:
    """Integral over [lo, hi] of the curve y(x) through the points (x sorted, increasing).

    ``pchip``: piecewise cubic Hermite interpolation (shape-preserving, no overshoot between
    points; the piecewise variant newer Bjøntegaard tools offer). ``cubic``: the
    original Bjøntegaard cubic polynomial fit (exact through 4 points, can oscillate).
    """
    if method == "cubic" or len(x) < 3:
        deg = min(3, len(x) - 1)
        p = np.polyint(np.polyfit(x, y, deg))
        return float(np.polyval(p, hi) - np.polyval(p, lo))
    if method != "pchip":
        raise ValueError(f"unknown BD interpolation {method!r}")
    from scipy.interpolate import PchipInterpolator

    if np.any(np.diff(x) <= 0):
        raise ValueError("an RD curve has two points at the same value")
    return float(PchipInterpolator(x, y).integrate(lo, hi))


MIN_OVERLAP_DB = 0.5  # below this, an average over the PSNR overlap means nothing
BD_METHOD = "pchip"


def bd_rate(rate_ref, psnr_ref, rate_test, psnr_test, method: str = BD_METHOD) -> float:
    """Bjøntegaard delta rate (%) of the test curve against the reference.

    Average rate difference at equal PSNR over the overlapping PSNR range, log-rate
    interpolated as a function of PSNR (``method``: see :func:`_integral`). Negative = the
    test codec needs fewer bits. Refused (ValueError) when the curves overlap by less than
    MIN_OVERLAP_DB; use bd_psnr then.
    """
    r1, d1 = _check(rate_ref, psnr_ref)
    r2, d2 = _check(rate_test, psnr_test)
    lo, hi = max(d1.min(), d2.min()), min(d1.max(), d2.max())
    if hi - lo < MIN_OVERLAP_DB:
        raise ValueError(f"the RD curves overlap by {max(hi - lo, 0):.2f} dB of PSNR only "
                         f"(BD-rate needs {MIN_OVERLAP_DB} dB); compare BD-PSNR instead")
    a1 = _integral(d1, np.log(r1), lo, hi, method)
    a2 = _integral(d2, np.log(r2), lo, hi, method)
    return float((math.exp((a2 - a1) / (hi - lo)) - 1) * 100)


def bd_psnr(rate_ref, psnr_ref, rate_test, psnr_test, method: str = BD_METHOD) -> float:
    """Bjøntegaard delta PSNR (dB) of the test curve against the reference at equal rate."""
    r1, d1 = _check(rate_ref, psnr_ref)
    r2, d2 = _check(rate_test, psnr_test)
    l1, l2 = np.log(r1), np.log(r2)
    lo, hi = max(l1.min(), l2.min()), min(l1.max(), l2.max())
    if hi <= lo:
        raise ValueError("the two RD curves do not overlap in rate")
    o1, o2 = np.argsort(l1), np.argsort(l2)
    a1 = _integral(l1[o1], d1[o1], lo, hi, method)
    a2 = _integral(l2[o2], d2[o2], lo, hi, method)
    return float((a2 - a1) / (hi - lo))
