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


def _pareto(rate: np.ndarray, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The points (sorted by PSNR) that no other point beats with less rate and more PSNR."""
    keep = [i for i in range(len(rate))
            if not any(rate[j] <= rate[i] and dist[j] >= dist[i]
                       and (rate[j], dist[j]) != (rate[i], dist[i])
                       for j in range(len(rate)))]
    return rate[keep], dist[keep]


def bd_rate_bound(rate_ref, psnr_ref, rate_test, psnr_test, method: str = BD_METHOD) -> float:
    """Upper bound on the BD-rate (%) of a test curve that starts above the reference's PSNR
    range, where :func:`bd_rate` is undefined (e.g. an adapter that beats the base codec at
    every quality by more than the base's whole PSNR span).

    The average is over the reference's PSNR range [lo, hi] (hi capped at the test's best
    PSNR). At a PSNR p below the test curve's lowest point, the test codec's rate is taken as
    the rate of its cheapest point, which already reaches more than p: no codec needs more
    bits for a lower quality, so the true test rate there can only be lower and the true
    BD-rate only more negative. Above the test's lowest point its curve is interpolated as
    in :func:`bd_rate`. The reference keeps only its undominated points (a point another one
    beats in both rate and PSNR is one its user would never pick), which can only make it
    cheaper and the bound more cautious. Raises ValueError where :func:`bd_rate` is defined,
    where the test curve does not start above ``lo`` and where [lo, hi] is under
    MIN_OVERLAP_DB.
    """
    r1, d1 = _pareto(*_check(rate_ref, psnr_ref))
    r2, d2 = _check(rate_test, psnr_test)
    if min(d1.max(), d2.max()) - max(d1.min(), d2.min()) >= MIN_OVERLAP_DB:
        raise ValueError("the curves overlap enough for a BD-rate; use bd_rate")
    lo, hi = d1.min(), min(d1.max(), d2.max())
    if d2.min() <= lo:
        raise ValueError("no bound: the test curve does not start above the reference's "
                         "lowest PSNR")
    if hi - lo < MIN_OVERLAP_DB:
        raise ValueError(f"the reference's PSNR range below the test's best is "
                         f"{max(hi - lo, 0):.2f} dB (a bound needs {MIN_OVERLAP_DB} dB)")
    mid = min(d2.min(), hi)  # [lo, mid]: flat at the cheapest test point; [mid, hi]: curve
    a2 = math.log(r2.min()) * (mid - lo)
    if hi > mid:
        a2 += _integral(d2, np.log(r2), mid, hi, method)
    a1 = _integral(d1, np.log(r1), lo, hi, method)
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
