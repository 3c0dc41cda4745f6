"""Measure each model's ``step_slope`` on training images and record it in the manifest.

    .venv/bin/python scripts/step_slopes.py [GENERATION] [EVERY] [--domain NAME]

For each quality of a base generation (default: the newest) whose entropy model is a
hyperprior, the slope (dB of mean PSNR per bpp) of its mean curve over every EVERY-th
training photo (default 8: 38 of the 301) between the grids e = -2 and e = 2 (:func:`nicodec.
quantstep.slope`): the exchange rate at which ``encode --step auto`` picks each image's grid.
With ``--domain NAME`` (a shipped adapter: astro, screen) the same for each quality of the
package ``--domain NAME`` encodes with, over every EVERY-th image of ``data/NAME/train``
(GENERATION is then ignored: write ``-``). The test sets are never read.
"""

from __future__ import annotations

import argparse

from nicodec import data, image, quantstep, registry


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("generation", nargs="?", default="-")
    ap.add_argument("every", nargs="?", type=int, default=8)
    ap.add_argument("--domain", default="photo")
    args = ap.parse_args()
    reg = registry.Registry()
    gen = max(reg.generations()) if args.generation == "-" else int(args.generation)
    files = data.list_images(data.split_dir(args.domain, "train"))[::args.every]
    images = [image.load(f).rgb for f in files]
    if args.domain == "photo":
        command = f".venv/bin/python scripts/step_slopes.py {gen} {args.every}"
        models = [(e.quality, e.id, reg.codec(quality=e.quality, generation=gen))
                  for e in reg.base_set(generation=gen)]
        models = [(q, i, c) for q, i, c in models if c.base_id == int(i, 16)]
    else:
        command = f".venv/bin/python scripts/step_slopes.py - {args.every} --domain {args.domain}"
        meta = reg.find_package(args.domain)
        if not meta.shipped:
            raise SystemExit(f"error: {args.domain!r} is not a shipped adapter")
        models = [(q, r.id, reg.codec(quality=q, domain=args.domain))
                  for q, r in sorted(meta.qualities.items())]
    for quality, model_id, codec in models:
        if not codec.steps:
            continue
        slope = quantstep.slope(codec, images)
        registry.set_step_slope(model_id, slope, command, directory=reg.dir)
        print(f"{args.domain} q{quality} {model_id}: {slope:.3f} dB per bpp over "
              f"{len(images)} training images", flush=True)


if __name__ == "__main__":
    main()
