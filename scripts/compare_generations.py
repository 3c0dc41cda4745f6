"""Real file sizes of two base generations that share their transforms, image by image.

    .venv/bin/python scripts/compare_generations.py OLD NEW QUALITY...   # e.g. 7 8 1 4

Encodes every photo of the test set with generation OLD's and NEW's model of each QUALITY
(``Registry.codec(generation=...)``), asserts that both give the same latents (so the
same pixels: the generations differ only in how they entropy-code them), and prints the
test set's bpp under each and the change. Quoted in models/training/README.md.
"""

from __future__ import annotations

import sys

import numpy as np

from nicodec import data, image
from nicodec.registry import Registry


def main() -> None:
    old, new, *qualities = map(int, sys.argv[1:])
    reg = Registry()
    files = data.list_images(data.split_dir("photo", "test"))
    for q in qualities:
        a, b = reg.codec(quality=q, generation=old), reg.codec(quality=q, generation=new)
        bytes_a = bytes_b = pixels = 0
        for f in files:
            rgb = image.load(f).rgb
            if not np.array_equal(a.latents(rgb), b.latents(rgb)):
                raise SystemExit(f"{f.name}: generations {old} and {new} of q{q} have other "
                                 "latents: this compares entropy models of the same transforms")
            bytes_a += len(a.encode(rgb))
            bytes_b += len(b.encode(rgb))
            pixels += rgb.shape[0] * rgb.shape[1]
        print(f"q{q}: generation {old} {8 * bytes_a / pixels:.4f} bpp, generation {new} "
              f"{8 * bytes_b / pixels:.4f} bpp ({(bytes_b / bytes_a - 1) * 100:+.2f} %)",
              flush=True)


if __name__ == "__main__":
    main()
