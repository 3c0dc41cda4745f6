"""Measure each base model's ``step_slope`` on training photos and record it in the manifest.

    .venv/bin/python scripts/step_slopes.py [GENERATION] [EVERY]

For each quality of a generation (default: the newest) whose entropy model is a hyperprior,
the slope (dB of mean PSNR per bpp) of its mean curve over every EVERY-th training photo
(default 8: 38 of the 301) between the grids e = -2 and e = 2 (:func:`nicodec.quantstep.
slope`): the exchange rate at which ``encode --step auto`` picks each image's grid. The
test sets are never read.
"""

from __future__ import annotations

import sys

from nicodec import data, image, quantstep, registry


def main() -> None:
    reg = registry.Registry()
    gen = int(sys.argv[1]) if len(sys.argv) > 1 else max(reg.generations())
    every = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    files = data.list_images(data.split_dir("photo", "train"))[::every]
    images = [image.load(f).rgb for f in files]
    command = f".venv/bin/python scripts/step_slopes.py {gen} {every}"
    for entry in reg.base_set(generation=gen):
        codec = reg.codec(quality=entry.quality)
        if codec.base_id != int(entry.id, 16) or not codec.steps:
            continue
        slope = quantstep.slope(codec, images)
        registry.set_step_slope(entry.id, slope, command)
        print(f"q{entry.quality} {entry.id}: {slope:.3f} dB per bpp over {len(images)} "
              f"training photos", flush=True)


if __name__ == "__main__":
    main()
