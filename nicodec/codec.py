"""Image <-> ``.nic`` bytes with a loaded network and its frozen entropy tables.

encode: pixels (H, W, 3) uint8 -> x in [0, 1], padded to a multiple of 16 (edge replicate)
        -> y = g_a(x) -> q = round(y - median) -> rANS payload -> container
decode: container -> payload -> q -> y_hat = q + median -> g_s(y_hat) -> crop, clamp, round

The integer latents ``q`` are the whole interface between the two sides, so a file encoded
on one device decodes on another.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from nicodec import container, image, tiling
from nicodec.entropy import LatentCoder, coder_version
from nicodec.errors import NicodecError
from nicodec.inference import DOWNSAMPLING


REFERENCE_THREADS = 2
"""The CPU threads every transform of a codec runs on, whatever the machine's core count.

oneDNN splits some convolutions' sums (the first transposed convolution, the 1x1 GDN sums)
across threads differently for each thread count: measured on the synthesis, 1, 2 and 4
threads give outputs up to 3e-4 apart, so a decoder on another core count writes a few
pixels one level off (at 1 thread, 40 of the 0.1-0.4 compat files). Every release's files
were decoded with torch's default on 2 cores, 2 threads; pinning the transforms to that
reproduces every recorded pixel on any core count (the same CPU instruction set assumed:
another one may sum in yet another order; see :func:`float_platform`)."""


def float_platform() -> str:
    """The CPU family the decoder's float32 sums depend on: vendor and oneDNN's widest
    instruction set, e.g. ``GenuineIntel-amx`` or ``AuthenticAMD-avx512``.

    On one family a file decodes to the same pixels every time, on any core count. Across
    families oneDNN runs other kernels, which sum in another order: measured between
    ``GenuineIntel-amx`` (where 0.1-0.7 recorded their compat files) and
    ``AuthenticAMD-avx512``, 77 of 133 compat files decode with 1-3 pixel values one level
    apart (at most 5 in 100,000 of a file's values), never more. An integer decoder would
    remove this; the float one cannot."""
    import platform

    import torch

    vendor = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            vendor = next((line.split(":", 1)[1].strip() for line in f
                           if line.startswith("vendor_id")), vendor)
    except OSError:
        pass
    if torch.cpu._is_amx_tile_supported():
        isa = "amx"
    else:
        isa = torch.backends.cpu.get_cpu_capability().lower()
    return f"{vendor}-{isa}"


@contextmanager
def reference_threads(device: str):
    """Run the enclosed transforms on :data:`REFERENCE_THREADS` CPU threads (no-op on GPUs),
    restoring the caller's count afterwards."""
    before = torch.get_num_threads()
    if device != "cpu" or before == REFERENCE_THREADS:
        yield
        return
    torch.set_num_threads(REFERENCE_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def latent_shape(width: int, height: int, channels: int) -> tuple[int, int, int]:
    return (channels, -(-height // DOWNSAMPLING), -(-width // DOWNSAMPLING))


def pixels_to_tensor(rgb: np.ndarray, device: str) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H', W') float in [0, 1], padded to multiples of 16."""
    x = torch.from_numpy(np.require(rgb, requirements=["C", "W"])).to(device)
    x = x.permute(2, 0, 1)[None].float() / 255.0
    h, w = rgb.shape[:2]
    ph, pw = -h % DOWNSAMPLING, -w % DOWNSAMPLING
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x


def tensor_to_pixels(x_hat: torch.Tensor, height: int, width: int) -> np.ndarray:
    """(1, 3, H', W') reconstruction -> (height, width, 3) uint8."""
    x = x_hat[0, :, :height, :width].clamp(0, 1).mul(255).round().to(torch.uint8)
    return x.permute(1, 2, 0).cpu().numpy()


@dataclass
class Codec:
    """A ready-to-use codec version: network + tables + the IDs it writes into headers."""

    net: nn.Module  # FactorizedPrior or AdaptedCodec (analysis/synthesis)
    coder: LatentCoder  # or a hyperprior.HyperCoder: same interface, its own NAME
    base_id: int
    adapter_id: int
    quality: int
    lam: float
    device: str = "cpu"
    name: str = "photo"
    # dB per bpp: how the encoder trades rate for mean PSNR when it picks a quantisation step
    # per image (:mod:`nicodec.quantstep`); None: it keeps the unit grid
    step_slope: float | None = None

    @property
    def steps(self) -> bool:
        """Whether this codec codes latents on other grids than the unit one (format
        version 3): its entropy model must be a hyperprior's (Gaussian tables by scale)."""
        return hasattr(self.coder, "side")

    def check_step(self, step: int) -> None:
        """Refuse a grid other than the unit one on a codec that cannot code it."""
        if step and not self.steps:
            raise NicodecError(f"--step {step}: {self.name} q{self.quality} codes its latents "
                               f"on the unit grid only (quantisation steps need a hyperprior "
                               f"model)")

    @property
    def median(self) -> torch.Tensor:
        return self.coder.median.to(self.device)[None, :, None, None]

    @torch.no_grad()
    def residual(self, rgb: np.ndarray) -> torch.Tensor:
        """``y - median`` (1, C, h, w) of an image: what :meth:`latents` rounds (in tiles,
        on the CPU, for images that :mod:`nicodec.tiling` codes in tiles)."""
        h, w = rgb.shape[:2]
        with reference_threads(self.device):
            if tiling.tiled(w, h):
                return tiling.analysis(self.net, rgb, self.device) - self.median.cpu()
            return self.net.analysis(pixels_to_tensor(rgb, self.device)) - self.median

    @torch.no_grad()
    def latents(self, rgb: np.ndarray, step: int = 0) -> np.ndarray:
        """Integer latents q (C, h, w) int32 of an image, on the grid of step exponent
        ``step``: ``round((y - median) / step_size(step))``."""
        return quantize(self.residual(rgb), step)[0].to(torch.int32).cpu().numpy()

    @torch.no_grad()
    def reconstruct(self, q: np.ndarray, height: int, width: int,
                    tiled: bool | None = None, step: int = 0) -> np.ndarray:
        """Pixels of integer latents (on the grid of step exponent ``step``); ``tiled``: the
        synthesis in tiles (format version 2; default: as the encoder chooses for this
        size)."""
        tiled = tiling.tiled(width, height) if tiled is None else tiled
        with reference_threads(self.device):
            if tiled:
                y_hat = dequantize(torch.from_numpy(q)[None], step) + self.median.cpu()
                return tiling.synthesis(self.net, y_hat, height, width, self.device)
            y_hat = dequantize(torch.from_numpy(q).to(self.device)[None], step) + self.median
            return tensor_to_pixels(self.net.synthesis(y_hat), height, width)

    def encode(self, rgb: np.ndarray, channels: int = 3, step: int | str = 0) -> bytes:
        """(H, W, 3) uint8 pixels -> complete .nic file bytes, on the grid of step exponent
        ``step`` (``"auto"``: the one :mod:`nicodec.quantstep` picks for this image)."""
        h, w = rgb.shape[:2]
        container.check_size(w, h)
        if step == "auto":
            from nicodec import quantstep

            step, q = quantstep.choose(self, rgb)
        else:
            q = self.latents(rgb, step)
        return self.encode_latents(q, w, h, channels, step)

    def encode_latents(self, q: np.ndarray, width: int, height: int, channels: int = 3,
                       step: int = 0) -> bytes:
        """Integer latents (C, h, w) of a ``width`` x ``height`` image, on the grid of step
        exponent ``step`` -> .nic file bytes (how :mod:`nicodec.effort` writes the latents
        it found)."""
        w, h = width, height
        container.check_size(w, h)
        self.check_step(step)
        payload = self.coder.encode(q, step)
        major, minor = coder_version()
        header = container.Header(quality=self.quality, channels=channels, width=w, height=h,
                                  base_id=self.base_id, adapter_id=self.adapter_id,
                                  coder=self.coder.NAME, coder_version=(major << 8) | minor,
                                  **container.layout(tiling.tiled(w, h), step))
        return container.pack(header, payload)

    def decode(self, header: container.Header, payload: bytes, strict: bool = True) -> np.ndarray:
        """A parsed .nic file -> (H, W, 3) uint8 pixels (``strict``: see
        :meth:`LatentCoder.decode`)."""
        check_coder(header, self.coder.NAME)
        if strict and header.quality != self.quality:
            raise NicodecError(f"corrupt .nic file (quality field {header.quality} does not "
                               f"match its model's quality {self.quality})")
        image.check_pixels(header.width, header.height)
        shape = latent_shape(header.width, header.height, self.coder.channels)
        step = header.step
        if step:
            from nicodec.hyperprior import check_step

            if not self.steps:
                raise NicodecError(f"corrupt .nic file (a quantisation step, but its model "
                                   f"codes with entropy coder {self.coder.NAME})")
            try:
                check_step(step)
            except ValueError as e:
                raise NicodecError(f"corrupt .nic file ({e})") from None
        try:
            q = self.coder.decode(payload, shape, strict, step=step)
        except NicodecError:
            raise
        except Exception as e:  # constriction raises plain exceptions on garbage input
            raise NicodecError(f"corrupt payload ({e})") from None
        return self.reconstruct(q, header.height, header.width, tiled=header.tiled, step=step)


def quantize(r: torch.Tensor, step: int = 0) -> torch.Tensor:
    """``round(r / step_size(step))`` of residuals ``r = y - median`` (float)."""
    if step == 0:
        return torch.round(r)
    from nicodec.hyperprior import step_size

    return torch.round(r / step_size(step))


def dequantize(q: torch.Tensor, step: int = 0) -> torch.Tensor:
    """Integer latents (1, C, h, w) -> float ``step_size(step) * q`` (the decoder's)."""
    if step == 0:
        return q.float()
    from nicodec.hyperprior import step_size

    return q.float() * step_size(step)


def check_coder(header: container.Header, expected: int = LatentCoder.NAME) -> None:
    """Refuse a file whose entropy-coder code is not its model's (``expected``), or that
    another constriction minor version wrote."""
    major, minor = coder_version()
    if header.coder not in container.CODERS:
        raise NicodecError(f"unknown entropy coder {header.coder} in file")
    if header.coder != expected:
        raise NicodecError(f"corrupt .nic file (entropy coder {header.coder} in the header, "
                           f"but its model codes with {expected})")
    if header.coder_version != (major << 8) | minor:
        fm, fn = divmod(header.coder_version, 256)
        raise NicodecError(f"file was entropy-coded with constriction {fm}.{fn}; this "
                           f"install has {major}.{minor}, whose bitstream may differ")
