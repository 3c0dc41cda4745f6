"""What the factorized prior charges for an image with nothing in it.

    .venv/bin/python scripts/probe_floor.py [DOMAIN ...]      # default: photo astro screen

A factorized prior codes every latent element with one fixed distribution per channel,
whatever the image holds, so even a flat image pays, for each element, the bits its symbol
costs under that channel's distribution. This prints the bpp of flat 512x512 images (black,
mid-grey, white; the encoder's own latents, through the real bitstream, container
included) for each quality of each domain's codec: every generation of the base codec
(does training lower the floor?), the newest adapter of each other name (its own entropy
model). Quoted in models/training/README.md.
"""

from __future__ import annotations

import sys

import numpy as np

from nicodec import metrics, registry

SIZE = 512
GREYS = (0, 128, 255)


def flat_bpp(codec) -> list[float]:
    """bpp of the complete .nic file of each flat grey image (effort 1)."""
    return [metrics.bpp(len(codec.encode(np.full((SIZE, SIZE, 3), g, np.uint8), 3)), SIZE, SIZE)
            for g in GREYS]


def main() -> None:
    domains = sys.argv[1:] or ["photo", "astro", "screen"]
    reg = registry.Registry()
    print(f"bpp of flat {SIZE}x{SIZE} images at grey levels {', '.join(map(str, GREYS))}")
    for domain in domains:
        for q in reg.qualities():
            if domain != "photo":
                rates = flat_bpp(reg.codec(quality=q, domain=domain))
                print(f"  {domain} q{q}: " + "  ".join(f"{r:.4f}" for r in rates))
                continue
            for gen in reg.generations():
                entry = reg.find_base(quality=q, generation=gen)
                if entry.generation != gen:
                    continue  # this generation did not renew this quality
                rates = flat_bpp(reg.codec(quality=q, generation=gen))
                print(f"  photo q{q} generation {gen} ({entry.id}): "
                      + "  ".join(f"{r:.4f}" for r in rates))


if __name__ == "__main__":
    main()
