"""Each image's whole score curve over the quantisation grids, to compare ways of searching
it (a probe for :func:`nicodec.quantstep.search`).

    .venv/bin/python scripts/probe_search.py OUT.json DOMAIN:SPLIT:EVERY ...
    .venv/bin/python scripts/probe_search.py analyse OUT.json

For every EVERY-th image of ``data/DOMAIN/SPLIT`` and every quality of the codec that
``--domain DOMAIN`` encodes with, the ideal bpp and the decoded PSNR on every grid
``e`` in ``GRIDS`` (what :func:`nicodec.quantstep.point` measures). ``analyse`` replays
searches on them: which grid each picks, how many grids it tries, and what the picks cost
in score (``PSNR - step_slope * bpp``) against the best grid.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from nicodec import data, image, quantstep, registry

GRIDS = range(-8, 13)


def collect(out: str, specs: list[str]) -> None:
    reg = registry.Registry()
    rows = []
    for spec in specs:
        domain, split, every = spec.split(":")
        files = data.list_images(data.split_dir(domain, split))[::int(every)]
        for q in reg.qualities():
            codec = reg.codec(quality=q, domain=domain)
            for f in files:
                rgb = image.load(f).rgb
                t = time.perf_counter()
                r = codec.residual(rgb)
                pts = {e: quantstep.point(codec, r, rgb, e)[:2] for e in GRIDS}
                rows.append({"domain": domain, "split": split, "image": f.name, "quality": q,
                             "slope": codec.step_slope, "pixels": rgb.shape[0] * rgb.shape[1],
                             "points": {str(e): p for e, p in pts.items()}})
                print(f"{domain} q{q} {f.name} {time.perf_counter() - t:.1f} s", flush=True)
                with open(out, "w") as fh:
                    json.dump(rows, fh)


def stride_search(score, lo=-8, hi=12, stride_=2, refine=True):
    """0.18's search: strides of 2 from 0, then one either side of the best."""
    tried = {}

    def at(e):
        if e not in tried:
            tried[e] = score(e)
        return tried[e]

    best = 0
    at(0)
    for stride in (stride_, -stride_):
        e = best + stride
        while lo <= e <= hi and at(e) > at(best):
            best, e = e, e + stride
        if best != 0:
            break
    for e in (best - 1, best + 1) if refine else ():
        if lo <= e <= hi and at(e) > at(best):
            best = e
    return best, len(tried)


def parabola_search(score, spread=2, lo=-8, hi=12, refine=True):
    """Three grids (-spread, 0, spread), the vertex of their parabola; ``refine``: where the
    vertex lies outside them, try it and fit again on the three nearest tried grids."""
    tried = {e: score(e) for e in (-spread, 0, spread)}

    def vertex():
        es = sorted(tried, key=lambda e: -tried[e])[:3]
        es.sort()
        a, b, c = (tried[e] for e in es)
        x0, x1, x2 = es
        den = (x0 - x1) * (x0 - x2) * (x1 - x2)
        A = (x2 * (b - a) + x1 * (a - c) + x0 * (c - b)) / den
        B = (x2 * x2 * (a - b) + x1 * x1 * (c - a) + x0 * x0 * (b - c)) / den
        if A >= 0:  # not concave: the best tried, moved a stride on
            best = max(tried, key=tried.get)
            return best + (spread if best == max(tried) else -spread if best == min(tried)
                           else 0)
        return int(np.clip(round(-B / (2 * A)), lo, hi))

    v = vertex()
    for _ in range(3 if refine else 0):
        if v in tried:
            break
        tried[v] = score(v)
        v = vertex()
    return v, len(tried)


def model_search(score, point, lo=-8, hi=12, walk=True):
    """Two grids (0 and 2) fit ``bpp(e) = bpp0 * exp(a e)`` and ``PSNR(e) = PSNR0 + b e``;
    the fit's best grid, then (``walk``) a walk of stride 1 from it to a local best."""
    (b0, p0), (b2, p2) = point(0), point(2)
    tried = {0: score(0), 2: score(2)}
    a, b = np.log(b2 / b0) / 2, (p2 - p0) / 2
    slope = (p0 - tried[0]) / b0
    if a > 0 and b > 0:
        v = int(np.clip(round(np.log(b / (slope * b0 * a)) / a), lo, hi))
    else:
        v = max(tried, key=tried.get)
    if v not in tried:
        tried[v] = score(v)
    if not walk:
        return v, len(tried)
    for d in (1, -1):
        moved = False
        while lo <= v + d <= hi:
            if v + d not in tried:
                tried[v + d] = score(v + d)
            if tried[v + d] <= tried[v]:
                break
            v, moved = v + d, True
        if moved:
            break
    return v, len(tried)


def analyse(path: str) -> None:
    rows = json.load(open(path))
    for name, fn in (("stride (0.18)", stride_search),
                     ("stride 2, no refinement", lambda s: stride_search(s, refine=False)),
                     ("stride 3", lambda s: stride_search(s, stride_=3)),
                     ("stride 3, no refinement", lambda s: stride_search(s, stride_=3,
                                                                          refine=False)),
                     ("parabola 2", lambda s: parabola_search(s, 2, refine=False)),
                     ("parabola 3", lambda s: parabola_search(s, 3, refine=False)),
                     ("parabola 2 refine", lambda s: parabola_search(s, 2)),
                     ("parabola 3 refine", lambda s: parabola_search(s, 3)),
                     ("model", "model"), ("model, no walk", "model-nowalk")):
        by = {}
        for row in rows:
            if not row["slope"]:
                continue
            pts = {int(e): p for e, p in row["points"].items()}

            def score(e):
                return pts[e][1] - row["slope"] * pts[e][0]
            best = max(pts, key=score)
            if fn in ("model", "model-nowalk"):
                e, n = model_search(score, lambda e: pts[e], walk=fn == "model")
            else:
                e, n = fn(score)
            d = by.setdefault(row["domain"], {"same": 0, "n": 0, "tries": 0, "loss": 0.0})
            d["same"] += e == best
            d["n"] += 1
            d["tries"] += n
            d["loss"] += score(best) - score(e)
        print(name, "  ".join(f"{k}: {v['same']}/{v['n']} best, {v['tries'] / v['n']:.2f} "
                              f"tries, score loss {v['loss'] / v['n']:.4f} dB"
                              for k, v in by.items()))


if __name__ == "__main__":
    if sys.argv[1] == "analyse":
        analyse(sys.argv[2])
    else:
        collect(sys.argv[1], sys.argv[2:])
