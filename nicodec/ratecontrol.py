"""Rate control: a target size (bpp) or quality (PSNR) per image from fixed decoders.

nicodec ships one decoder per quality. Between two of them the encoder has a continuous
knob that every decoder reads: the rounding of the latents ``r = g_a(x) - median``. A
dead zone ``t`` rounds each latent towards zero,

    q = sign(r) * max(0, floor(|r| + 1/2 - t)),      t = 0: plain rounding,

so more latents land on the cheap symbols around the median: fewer bits, a little more
distortion (the classic encoder-side trade-off of JPEG and JPEG 2000 quantisers). Per
image, :func:`to_bpp` takes the lowest quality whose plain rate reaches the target and
bisects ``t`` until the file is within ``TOLERANCE`` of it; :func:`to_psnr` takes the
qualities that reach the target PSNR and keeps the smallest file that still does. A
target no installed quality can reach is a clear error. The files are ordinary ``.nic``
files: same header, same models, decoded by every release.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nicodec import metrics
from nicodec.codec import Codec
from nicodec.errors import NicodecError

TOLERANCE = 0.03  # --target-bpp: the file lands within +-3 % of the target
MAX_DEADZONE = 4.0  # t beyond this zeroes nearly every latent
MIN_DEADZONE = -0.5  # t = -1/2 rounds every latent away from zero: the most bits
BISECTION_STEPS = 30


@dataclass
class Controlled:
    """A rate-controlled encoding: the file and how it was made."""

    data: bytes
    codec: Codec
    deadzone: float
    bpp: float
    psnr: float


def deadzone(r: np.ndarray, t: float) -> np.ndarray:
    """Latents rounded towards zero by ``t`` (``t = 0``: plain rounding, as effort 1)."""
    if t == 0:
        return np.round(r).astype(np.int32)
    return (np.sign(r) * np.maximum(0.0, np.floor(np.abs(r) + 0.5 - t))).astype(np.int32)


class _Image:
    """One image against one codec: its continuous latents and what each ``t`` gives."""

    def __init__(self, codec: Codec, rgb: np.ndarray, channels: int):
        self.codec, self.rgb, self.channels = codec, rgb, channels
        self.h, self.w = rgb.shape[:2]
        # the same float32 arithmetic as Codec.latents, so t = 0 gives its bytes
        self.r = codec.residual(rgb)[0].cpu().numpy()
        self._cache: dict[float, bytes] = {}
        self._psnr: dict[float, float] = {}

    def data(self, t: float) -> bytes:
        if t not in self._cache:
            self._cache[t] = self.codec.encode_latents(deadzone(self.r, t), self.w, self.h,
                                                       self.channels)
        return self._cache[t]

    def bpp(self, t: float) -> float:
        return metrics.bpp(len(self.data(t)), self.w, self.h)

    def psnr(self, t: float) -> float:
        if t not in self._psnr:  # each costs a synthesis: bisection asks again at the end
            rec = self.codec.reconstruct(deadzone(self.r, t), self.h, self.w)
            self._psnr[t] = metrics.psnr(self.rgb, rec)
        return self._psnr[t]

    def result(self, t: float) -> Controlled:
        return Controlled(self.data(t), self.codec, t, self.bpp(t), self.psnr(t))


def _check(codecs: list[Codec]) -> list[Codec]:
    if not codecs:
        raise NicodecError("no codec to control the rate with")
    return sorted(codecs, key=lambda c: c.lam)


def to_bpp(codecs: list[Codec], rgb: np.ndarray, target: float,
           channels: int = 3) -> Controlled:
    """The file within ``TOLERANCE`` of ``target`` bpp, from the lowest quality that
    reaches it. NicodecError when no quality can."""
    if not target > 0:
        raise NicodecError(f"--target-bpp must be positive (got {target:g})")
    lo_ok, hi_ok = target * (1 - TOLERANCE), target * (1 + TOLERANCE)
    images = [_Image(c, rgb, channels) for c in _check(codecs)]
    top = images[-1].bpp(0.0)
    if top < lo_ok:
        raise NicodecError(f"--target-bpp {target:g} is out of reach: the highest quality "
                           f"({images[-1].codec.quality}) gives {top:.4f} bpp on this image")
    img = next(i for i in images if i.bpp(0.0) >= lo_ok)
    if img.bpp(0.0) <= hi_ok:
        return img.result(0.0)
    floor_bpp = img.bpp(MAX_DEADZONE)
    lo, hi = 0.0, MAX_DEADZONE  # bpp(lo) > target band >= ... bpp(hi)
    if floor_bpp > hi_ok:
        if img is images[0]:
            raise NicodecError(f"--target-bpp {target:g} is out of reach: quality "
                               f"{img.codec.quality} gives at least {floor_bpp:.4f} bpp on "
                               "this image (its header alone is 32 bytes)")
        # the next lower quality, rounding away from zero (t < 0) for more bits
        img = images[images.index(img) - 1]
        lo, hi = MIN_DEADZONE, 0.0
    for _ in range(BISECTION_STEPS):
        mid = (lo + hi) / 2
        b = img.bpp(mid)
        if lo_ok <= b <= hi_ok:
            return img.result(mid)
        if b > hi_ok:
            lo = mid
        else:
            hi = mid
    # the rate jumps across the band between two neighbouring t: take the nearer side
    best = min((lo, hi), key=lambda t: abs(img.bpp(t) - target))
    return img.result(best)


def to_psnr(codecs: list[Codec], rgb: np.ndarray, target: float,
            channels: int = 3) -> Controlled:
    """The smallest file with at least ``target`` dB PSNR. NicodecError when no quality
    reaches it."""
    images = [_Image(c, rgb, channels) for c in _check(codecs)]
    reach = [i for i in images if i.psnr(0.0) >= target]
    if not reach:
        raise NicodecError(f"--target-psnr {target:g} is out of reach: the highest quality "
                           f"({images[-1].codec.quality}) gives {images[-1].psnr(0.0):.2f} "
                           "dB on this image")
    best: Controlled | None = None
    for img in reach[:2]:  # the lowest qualities that reach it; higher ones only cost more
        lo, hi = 0.0, MAX_DEADZONE  # psnr(lo) >= target
        if img.psnr(hi) >= target:
            lo = hi
        else:
            for _ in range(12):
                mid = (lo + hi) / 2
                if img.psnr(mid) >= target:
                    lo = mid
                else:
                    hi = mid
        found = img.result(lo)
        if best is None or len(found.data) < len(best.data):
            best = found
    return best
