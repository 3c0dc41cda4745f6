"""The Python API: compress and decompress images in a few lines.

    >>> import nicodec
    >>> data = nicodec.compress(pixels, quality=3)        # numpy uint8 or a PIL image
    >>> pixels = nicodec.decompress(data)                 # numpy uint8 (H, W, 3) or (H, W)
    >>> nicodec.info(data)["width"]

For many images keep the models loaded: :class:`Encoder` and :class:`Decoder`. After
``import nicodec``, Pillow also opens and saves ``.nic`` files (:mod:`nicodec.pillow`).
The command line is a thin shell over this module.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from nicodec import container, image, metrics
from nicodec.errors import NicodecError
from nicodec.registry import Registry, pick_device


@dataclass
class Encoded:
    """One encoding: the file bytes and the codec that wrote them."""

    data: bytes
    codec_name: str
    quality: int
    dropped_alpha: bool
    tried: list[tuple[str, int, float]]  # --domain auto: (codec, bytes, R + lambda*D) each
    deadzone: float | None = None  # rate control: the dead zone it chose (see ratecontrol)


def as_image(img) -> image.LoadedImage:
    """A numpy array or PIL image as the pixels nicodec codes."""
    if isinstance(img, image.LoadedImage):
        return img
    if isinstance(img, np.ndarray):
        return image.from_array(img)
    if hasattr(img, "mode") and hasattr(img, "size"):  # a PIL image
        return image.from_pil(img)
    raise NicodecError(f"cannot compress a {type(img).__name__}: give a uint8 numpy array "
                       "or a PIL image")


def rd_cost(codec, rgb: np.ndarray, data: bytes) -> float:
    """``R + lambda * D`` of an encoding: bpp + lambda * MSE on the 0..255 scale (the
    training objective), with the codec's own lambda."""
    h, w = rgb.shape[:2]
    rec = codec.decode(*container.parse(data))
    return metrics.bpp(len(data), w, h) + codec.lam * metrics.mse(rgb, rec)


class Encoder:
    """Keeps the codec(s) of one (quality, domain) loaded for many images.

    ``domain``: ``photo`` (the base codec), an installed adapter's name, or ``auto`` (every
    installed codec; each image keeps the encoding of lowest ``R + lambda * D``).
    ``effort``: 1 (plain rounding, the default) up to ``max(effort.EFFORTS)``: the encoder
    searches for better latents (smaller files at equal quality, any decoder reads them).
    ``target_bpp`` / ``target_psnr``: per image, the quality and dead zone (and with
    ``step="auto"``, the grid) that meet the target
    (:mod:`nicodec.ratecontrol`); ``quality`` is then ignored.
    ``step``: the quantisation grid, ``"auto"`` (per image, :mod:`nicodec.quantstep`: the
    models that have a ``step_slope``), ``0`` (the unit grid: files every release reads) or
    an exponent (a finer grid for a larger one; format version 3).
    """

    def __init__(self, quality: int = 3, domain: str = "photo", device: str = "auto",
                 registry: Registry | None = None, effort: int = 1,
                 target_bpp: float | None = None, target_psnr: float | None = None,
                 step: int | str = "auto"):
        from nicodec import effort as effort_
        from nicodec.hyperprior import MAX_STEP

        if step != "auto" and (not isinstance(step, int) or not -MAX_STEP <= step <= MAX_STEP):
            raise NicodecError(f"step must be 'auto' or an integer -{MAX_STEP}..{MAX_STEP} "
                               f"(got {step!r})")
        self.step = step
        self.registry = registry or Registry()
        self.device = pick_device(device)
        self.quality, self.domain = quality, domain
        self.effort = effort_.effort(effort).level
        self.target_bpp, self.target_psnr = target_bpp, target_psnr
        targeted = target_bpp is not None or target_psnr is not None
        if target_bpp is not None and target_psnr is not None:
            raise NicodecError("give --target-bpp or --target-psnr, not both")
        if targeted and domain == "auto":
            raise NicodecError("rate control needs one codec: name --domain (not auto)")
        if targeted and self.effort > 1:
            raise NicodecError("rate control works at effort 1 (its dead zone replaces the "
                               "latent search); drop --effort or the target")
        if targeted and step not in ("auto", 0):
            raise NicodecError("rate control picks the grid itself (--step auto) or keeps "
                               "the unit grid (--step 0); drop --step E or the target")
        if targeted:
            self.codecs = self._all_qualities(domain)
        elif domain == "auto":
            self.codecs = self.registry.codecs(quality=quality, device=self.device)
        else:
            self.codecs = [self.registry.codec(quality=quality, domain=domain,
                                               device=self.device)]
        if step != "auto":
            for codec in self.codecs:  # before any image is read
                codec.check_step(step)

    def _all_qualities(self, domain: str) -> list:
        have = (self.registry.qualities() if domain == "photo"
                else sorted(self.registry.find_package(domain).qualities))
        return [self.registry.codec(quality=q, domain=domain, device=self.device)
                for q in have]

    def _encode_one(self, codec, loaded, progress) -> bytes:
        from nicodec import effort

        return effort.encode(codec, loaded.rgb, loaded.channels, self.effort,
                             progress=progress, step=self.step)

    def encode(self, img, progress=None) -> Encoded:
        """Encode and say which codec won (and, for ``auto``, what each cost).
        ``progress(done, total)`` is called during slow efforts."""
        from nicodec import ratecontrol

        loaded = as_image(img)
        if self.target_bpp is not None or self.target_psnr is not None:
            if self.target_bpp is not None:
                got = ratecontrol.to_bpp(self.codecs, loaded.rgb, self.target_bpp,
                                         loaded.channels, grids=self.step == "auto")
            else:
                got = ratecontrol.to_psnr(self.codecs, loaded.rgb, self.target_psnr,
                                          loaded.channels, grids=self.step == "auto")
            return Encoded(got.data, got.codec.name, got.codec.quality, loaded.dropped_alpha,
                           [], got.deadzone)
        if len(self.codecs) == 1:
            codec = self.codecs[0]
            return Encoded(self._encode_one(codec, loaded, progress), codec.name,
                           self.quality, loaded.dropped_alpha, [])
        tried, best = [], None
        for codec in self.codecs:
            data = self._encode_one(codec, loaded, progress)
            cost = rd_cost(codec, loaded.rgb, data)
            tried.append((codec.name, len(data), cost))
            if best is None or cost < best[0]:
                best = (cost, codec, data)
        return Encoded(best[2], best[1].name, self.quality, loaded.dropped_alpha, tried)

    def compress(self, img) -> bytes:
        """Image (uint8 array or PIL image) -> ``.nic`` bytes."""
        return self.encode(img).data


class Decoder:
    """Decodes any ``.nic`` file whose models are installed; keeps them loaded."""

    def __init__(self, device: str = "auto", registry: Registry | None = None):
        self.registry = registry or Registry()
        self.device = pick_device(device)

    def decode(self, data: bytes) -> tuple[container.Header, np.ndarray]:
        """(header, (H, W, 3) uint8 pixels) of a ``.nic`` file's bytes."""
        header, payload = container.parse(bytes(data))
        codec = self.registry.codec_for_header(header, self.device)
        return header, codec.decode(header, payload)

    def decompress(self, data: bytes) -> np.ndarray:
        """``.nic`` bytes -> uint8 pixels: (H, W, 3), or (H, W) for a greyscale source."""
        header, rgb = self.decode(data)
        # greyscale: the same luma as `nicodec decode` writes (the decoded R, G, B differ)
        return np.asarray(image.to_pil(rgb, header.channels)) if header.channels == 1 else rgb


@functools.lru_cache(maxsize=8)
def _encoder(quality: int, domain: str, device: str, effort: int, target_bpp: float | None,
             target_psnr: float | None, step: int | str = "auto") -> Encoder:
    return Encoder(quality, domain, device, effort=effort, target_bpp=target_bpp,
                   target_psnr=target_psnr, step=step)


@functools.lru_cache(maxsize=2)
def _decoder(device: str) -> Decoder:
    return Decoder(device)


def compress(img, quality: int = 3, domain: str = "photo", device: str = "auto", *,
             effort: int = 1, target_bpp: float | None = None,
             target_psnr: float | None = None, step: int | str = "auto") -> bytes:
    """Image (uint8 numpy array (H, W) / (H, W, 3) or a PIL image) -> ``.nic`` bytes.
    ``effort`` > 1 searches for smaller files at equal quality; ``target_bpp`` /
    ``target_psnr`` choose the quality per image; ``step`` the quantisation grid (``0``:
    files every release reads; see :class:`Encoder`)."""
    return _encoder(quality, domain, device, effort, target_bpp, target_psnr,
                    step).compress(img)


def decompress(data: bytes, device: str = "auto") -> np.ndarray:
    """``.nic`` bytes -> uint8 pixels, (H, W, 3) or (H, W) for a greyscale source."""
    return _decoder(device).decompress(data)


def info(data: bytes) -> dict:
    """What a ``.nic`` file's header says, and which installed models it needs."""
    header, _ = container.parse(bytes(data))
    d = header.as_dict()
    d["file_bytes"] = len(data)
    d["bpp"] = round(8 * len(data) / (header.width * header.height), 6)
    reg = Registry()
    base = next((m for m in reg.bases() if m.id == d["base_id"]), None)
    d["base_model"] = ({"installed": True, "domain": base.domain, "quality": base.quality,
                        "lambda": base.lam, "file": base.file, "generation": base.generation}
                       if base else {"installed": False})
    d["adapter"] = reg.describe_adapter(d["adapter_id"]) if d["adapter_id"] else None
    return d
