"""Real file sizes of two codecs that share their transforms, image by image.

    .venv/bin/python scripts/compare_generations.py OLD NEW QUALITY...   # e.g. 7 8 1 4

OLD and NEW are base model generations (``Registry.codec(generation=...)``, on the photo
test set) or two installed adapter packages of one name, by file name (e.g.
``screen-g6-long3-hyperprior.safetensors screen-g6-long3-context.safetensors``, on their
domain's test set). For each QUALITY it encodes every test image with both, asserts that
both give the same latents (so the same pixels: the two differ only in how they
entropy-code them), and prints the test set's bpp under each and the change. Quoted in
models/training/README.md.
"""

from __future__ import annotations

import sys

import numpy as np

from nicodec import data, image
from nicodec.registry import Registry


def codec_of(reg: Registry, which: str, quality: int):
    """(codec, domain) of a base generation ("8") or an installed package file."""
    if which.isdigit():
        return reg.codec(quality=quality, generation=int(which)), "photo"
    meta = next((m for m in reg.packages() if m.path.name == which), None)
    if meta is None:
        raise SystemExit(f"no installed package file {which}")
    return reg._package_codec(meta, quality, "cpu"), meta.name


def main() -> None:
    old, new, *qualities = sys.argv[1:]
    reg = Registry()
    for q in map(int, qualities):
        (a, domain), (b, other) = codec_of(reg, old, q), codec_of(reg, new, q)
        if domain != other:
            raise SystemExit(f"{old} codes {domain}, {new} codes {other}")
        bytes_a = bytes_b = pixels = 0
        for f in data.list_images(data.split_dir(domain, "test")):
            rgb = image.load(f).rgb
            if not np.array_equal(a.latents(rgb), b.latents(rgb)):
                raise SystemExit(f"{f.name}: {old} and {new} of q{q} have other latents: this "
                                 "compares entropy models of the same transforms")
            bytes_a += len(a.encode(rgb))
            bytes_b += len(b.encode(rgb))
            pixels += rgb.shape[0] * rgb.shape[1]
        la, lb = (f"generation {w}" if w.isdigit() else w for w in (old, new))
        print(f"q{q}: {la} {8 * bytes_a / pixels:.4f} bpp, {lb} {8 * bytes_b / pixels:.4f} "
              f"bpp ({(bytes_b / bytes_a - 1) * 100:+.2f} %)", flush=True)


if __name__ == "__main__":
    main()
