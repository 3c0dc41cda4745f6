"""Where should a large image choose its quantisation grid? A probe of the default encoder.

    .venv/bin/python scripts/probe_grid_sample.py OUT.json [--from EARLIER.json] [--tiles N] [QUALITY ...]

``encode --step auto`` picks each image's grid by ``argmax_e PSNR(e) - step_slope *
bpp(e)`` (:mod:`nicodec.quantstep`). An image over ``quantstep.SAMPLE_SIDE`` squared pixels
(every camera photo) scores the grids on a part of itself, so that the choice costs a few
seconds whatever its size. This probe compares three parts: the central 1024 x 1024 crop
(``centre``: :func:`quantstep.central_crop`, 0.18-0.20), the mosaic of tiles spread over the
image that rate control chooses on (``sample``: :func:`nicodec.ratecontrol.sample`), and
the same tiles each seen with a halo of the image around it, counting only their own
latents and pixels (``tiles``: :class:`quantstep.TileSample`), against the grid the whole
image itself scores best (:func:`quantstep.walk` on all of it: the reference).
``--from`` reuses an earlier run's rows and adds the parts it lacks; ``--tiles N`` asks
:class:`quantstep.TileSample` for about N tiles instead of ``SAMPLE_TILES``.

The images are the photo test set's originals at full resolution (the packages' JPEGs
that ``make data`` downscales to 768 pixels; held out of training like their downscaled
copies), those over a megapixel. For each image and quality: the grid each part picks and
the whole image's ``PSNR - slope * bpp``, bpp (the tables' ideal bits) and PSNR there.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from nicodec import data, image, quantstep, ratecontrol, registry


def originals() -> list[tuple[str, np.ndarray]]:
    """(path in its package, pixels) of the photo test set's originals over a megapixel
    (two are named 2560x1440.jpg)."""
    split = json.loads((Path(data.__file__).parent / "splits" / "photo.json").read_text())
    found = []
    for rel in split["test"]:
        rgb = image.load(data.data_dir() / "pkgs" / rel).rgb
        if rgb.shape[0] * rgb.shape[1] > quantstep.SAMPLE_SIDE ** 2:
            found.append((rel, rgb))
    return found


PARTS = ("centre", "sample", "tiles")


def choose(part: str, codec, rgb: np.ndarray) -> int:
    """The grid that ``part`` of ``rgb`` picks."""
    if part == "centre":
        return quantstep.search(codec, quantstep.central_crop(rgb, quantstep.SAMPLE_SIDE))[0]
    if part == "sample":
        return quantstep.search(codec, ratecontrol.sample(rgb))[0]
    tiles = quantstep.TileSample(codec, rgb)
    return quantstep.walk(tiles.score)


def main() -> None:
    args = sys.argv[1:]
    out = args.pop(0)
    earlier = {}
    if args[:1] == ["--from"]:
        for row in json.loads(Path(args[1]).read_text())["rows"]:
            earlier[(row["image"], row["quality"])] = row
        args = args[2:]
    if args[:1] == ["--tiles"]:
        quantstep.SAMPLE_TILES = int(args[1])
        args = args[2:]
    reg = registry.Registry()
    qualities = [int(q) for q in args] or reg.qualities()
    rows = []
    for name, rgb in originals():
        for quality in qualities:
            codec = reg.codec(quality=quality)
            row = earlier.get((name, quality)) or {
                "image": name, "size": f"{rgb.shape[1]}x{rgb.shape[0]}", "quality": quality}
            for part in PARTS:
                if f"{part}_grid" not in row:
                    t0 = time.perf_counter()
                    row[f"{part}_grid"] = choose(part, codec, rgb)
                    row[f"{part}_seconds"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            r = None
            whole = {int(e): p for e, p in row.get("points", {}).items()}

            def at(e: int) -> float:
                nonlocal r
                if e not in whole:
                    r = codec.residual(rgb) if r is None else r
                    bpp, psnr, _ = quantstep.point(codec, r, rgb, e)
                    whole[e] = {"bpp": bpp, "psnr": psnr,
                                "score": psnr - codec.step_slope * bpp}
                return whole[e]["score"]

            best = row.get("whole_grid")
            if best is None:  # the whole image's own best grid, as quantstep.search walks
                best = quantstep.walk(at)
                row["whole_grid"], row["whole_seconds"] = best, time.perf_counter() - t0
            for part in PARTS:
                at(row[f"{part}_grid"])
            row["points"] = {str(e): p for e, p in sorted(whole.items())}
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "points"}), flush=True)
            Path(out).write_text(json.dumps({"rows": rows}, indent=1))
    summary = {}
    for part in PARTS:
        picks = [(r, r["points"][str(r[f"{part}_grid"])], r["points"][str(r["whole_grid"])])
                 for r in rows]
        summary[part] = {
            "same_grid_as_whole": sum(r[f"{part}_grid"] == r["whole_grid"] for r, _, _ in picks),
            "mean_grid_distance": float(np.mean([abs(r[f"{part}_grid"] - r["whole_grid"])
                                                 for r, _, _ in picks])),
            "mean_score_loss_db": float(np.mean([b["score"] - p["score"] for _, p, b in picks])),
            "max_score_loss_db": float(max(b["score"] - p["score"] for _, p, b in picks)),
            "mean_bpp": float(np.mean([p["bpp"] for _, p, _ in picks])),
            "mean_psnr": float(np.mean([p["psnr"] for _, p, _ in picks])),
            "seconds_per_choice": float(np.mean([r[f"{part}_seconds"] for r, _, _ in picks])),
        }
    summary["whole"] = {
        "mean_bpp": float(np.mean([r["points"][str(r["whole_grid"])]["bpp"] for r in rows])),
        "mean_psnr": float(np.mean([r["points"][str(r["whole_grid"])]["psnr"] for r in rows])),
        "seconds_per_choice": float(np.mean([r["whole_seconds"] for r in rows]))}
    print(json.dumps(summary, indent=1))
    Path(out).write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
