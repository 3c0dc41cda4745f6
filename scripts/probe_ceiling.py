"""How far rounding and the transforms each hold the base models back on the photo test set.

    .venv/bin/python scripts/probe_ceiling.py [GENERATION]

For each quality of a generation (default: the newest), the test set's mean PSNR of
``g_s(y_hat)`` for three ``y_hat``: the unquantised latents ``y`` (the transforms' ceiling:
no rate can do better), ``round(y - median) + median`` as the codec codes them, and the same
on a grid twice as fine. Quoted in models/training/README.md.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from nicodec import data, image, metrics, registry
from nicodec.codec import pixels_to_tensor, tensor_to_pixels

GRIDS = {
    "unquantised": lambda y, med: y,
    "rounded": lambda y, med: torch.round(y - med) + med,
    "rounded to 1/2": lambda y, med: torch.round(2 * (y - med)) / 2 + med,
}


def main() -> None:
    reg = registry.Registry()
    gen = int(sys.argv[1]) if len(sys.argv) > 1 else max(reg.generations())
    tests = [image.load(f).rgb for f in data.list_images(data.split_dir("photo", "test"))]
    for entry in reg.base_set(generation=gen):
        q = entry.quality
        net = reg.base_network(entry)
        med = net.entropy_bottleneck._get_medians().reshape(1, -1, 1, 1)
        psnr = {name: [] for name in GRIDS}
        with torch.no_grad():
            for rgb in tests:
                y = net.analysis(pixels_to_tensor(rgb, "cpu"))
                for name, grid in GRIDS.items():
                    out = tensor_to_pixels(net.synthesis(grid(y, med)), *rgb.shape[:2])
                    psnr[name].append(metrics.psnr(rgb, out))
        print(f"generation {gen} q{q}: " +
              ", ".join(f"{name} {np.mean(v):.2f} dB" for name, v in psnr.items()))


if __name__ == "__main__":
    main()
