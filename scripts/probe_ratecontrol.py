"""This tree's rate control against an earlier release's, in one run on the same images.

    .venv/bin/python scripts/probe_ratecontrol.py REV OUT.json DOMAIN:LIMIT ...

``REV`` is a git revision whose ``nicodec/ratecontrol.py`` is loaded beside this tree's
(the rest of the package is this tree's: the same models and coders). For the first LIMIT
test images of each DOMAIN, the targets ``make bench --only ratecontrol`` asks (6
``--target-bpp`` targets spread between the image's q1 and q4 sizes, ``--target-psnr``
0.3 dB above its q1, q2 and q3), each through both, alternately: the quality, grid, dead
zone, bytes and PSNR each lands on, and its seconds. A summary per domain and kind says how
often both pick the same quality and grid, the bytes of each (``--target-psnr``) or the
mean PSNR (``--target-bpp``, whose files land within the same band), and the time ratio.

A spec ``large:MEGAPIXELS:LIMIT`` takes the first LIMIT photo test images mirrored out to
about MEGAPIXELS (a camera's size; ``bench._mirrored``) and asks each for one
``--target-bpp`` (between its q1 and q4 sizes, geometrically) and one ``--target-psnr``
(0.3 dB above its q2): through REV's rate control, this tree's (which chooses on a
:func:`nicodec.ratecontrol.sample` of an image this large) and this tree's on the whole
image (``whole``: the sample switched off), to show what the sample costs in bytes or PSNR.

A spec ``refuse:MEGAPIXELS:LIMIT`` asks the same mirrored images for targets out of every
quality's reach (``REFUSED``): through REV's rate control and this tree's, the error line
each gives and its seconds.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from nicodec import container, data, image, metrics, ratecontrol, registry

TARGETS = 6  # --target-bpp targets per image, as the bench
# out of reach: above every quality, below any file's size (the header alone is 32 bytes)
REFUSED = [("bpp", 40.0), ("bpp", 1e-5), ("psnr", 60.0)]


def load_revision(rev: str):
    """``nicodec/ratecontrol.py`` of git revision ``rev``, as a module."""
    root = Path(__file__).resolve().parent.parent
    source = subprocess.run(["git", "show", f"{rev}:nicodec/ratecontrol.py"], cwd=root,
                            check=True, capture_output=True, text=True).stdout
    path = Path("runs") / f"ratecontrol_{rev}.py"
    path.parent.mkdir(exist_ok=True)
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"ratecontrol_{rev}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def landing(control, kind: str, codecs, rgb, target: float) -> dict:
    t0 = time.perf_counter()
    got = (control.to_bpp if kind == "bpp" else control.to_psnr)(codecs, rgb, target)
    return {"seconds": time.perf_counter() - t0, "quality": got.codec.quality,
            "step": got.step, "deadzone": got.deadzone, "bytes": len(got.data),
            "bpp": got.bpp, "psnr": got.psnr}


def mirrored(megapixels: str, limit: str):
    """(file, pixels) of the first ``limit`` photo test images mirrored out to about
    ``megapixels`` (a 4:3 photo)."""
    from nicodec.bench import _mirrored

    side = np.sqrt(float(megapixels) * 1e6 / 12)
    h, w = int(3 * side) // 16 * 16, int(4 * side) // 16 * 16
    for f in data.list_images(data.split_dir("photo", "test"))[:int(limit)]:
        yield f, _mirrored(image.load(f).rgb, h, w)


def refuse(old, reg, rows: list, megapixels: str, limit: str) -> dict:
    """The ``refuse:MEGAPIXELS:LIMIT`` spec (see the module's docstring)."""
    codecs = [reg.codec(quality=q) for q in reg.qualities()]
    summary = {}
    for f, rgb in mirrored(megapixels, limit):
        for kind, target in REFUSED:
            row = {"domain": f"photo {rgb.shape[1]}x{rgb.shape[0]}", "image": f.name,
                   "kind": kind, "target": target}
            for name, control in (("old", old), ("new", ratecontrol)):
                t0 = time.perf_counter()
                try:
                    landing(control, kind, codecs, rgb, target)
                    row[name] = {"error": None}
                except Exception as e:  # noqa: BLE001 - the refusal is what is measured
                    row[name] = {"error": str(e)}
                row[name]["seconds"] = time.perf_counter() - t0
            row["same_error"] = row["old"]["error"] == row["new"]["error"]
            rows.append(row)
            print(json.dumps(row), flush=True)
            summary.setdefault(f"refuse:{kind}:{target:g}", []).append(
                {"old_seconds": row["old"]["seconds"], "new_seconds": row["new"]["seconds"],
                 "same_error": row["same_error"]})
    return summary


def large(old, reg, rows: list, megapixels: str, limit: str) -> dict:
    """The ``large:MEGAPIXELS:LIMIT`` spec (see the module's docstring)."""
    codecs = [reg.codec(quality=q) for q in reg.qualities()]
    runs = [("old", old), ("new", ratecontrol), ("whole", ratecontrol)]
    for f, rgb in mirrored(megapixels, limit):
        h, w = rgb.shape[:2]
        q1, q4 = (metrics.bpp(len(c.encode(rgb)), w, h) for c in (codecs[0], codecs[-1]))
        q2 = codecs[1]
        targets = [("bpp", float(np.sqrt(q1 * q4))),
                   ("psnr", metrics.psnr(rgb, q2.decode(*container.parse(q2.encode(rgb))))
                    + 0.3)]
        for kind, target in targets:
            row = {"domain": f"photo {w}x{h}", "image": f.name, "kind": kind,
                   "target": target}
            for name, control in runs:
                sample_side = ratecontrol.SAMPLE_SIDE
                if name == "whole":
                    ratecontrol.SAMPLE_SIDE = 1 << 20
                try:
                    row[name] = landing(control, kind, codecs, rgb, target)
                finally:
                    ratecontrol.SAMPLE_SIDE = sample_side
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = {}
    for kind in ("bpp", "psnr"):
        got = [r for r in rows if r["domain"].startswith("photo ") and r["kind"] == kind]
        s = {"targets": len(got)}
        for name, _ in runs:
            s[f"{name}_seconds_per_target"] = float(np.mean([r[name]["seconds"] for r in got]))
            s[f"{name}_bytes"] = int(sum(r[name]["bytes"] for r in got))
            s[f"{name}_mean_psnr"] = float(np.mean([r[name]["psnr"] for r in got]))
        s["speedup"] = s["old_seconds_per_target"] / s["new_seconds_per_target"]
        summary[f"large:{kind}"] = s
        print(f"{megapixels} MP --target-{kind}: {s}", flush=True)
    return summary


def main() -> None:
    rev, out, specs = sys.argv[1], sys.argv[2], sys.argv[3:]
    old = load_revision(rev)
    reg = registry.Registry()
    rows, summary = [], {}
    for spec in specs:
        if spec.startswith(("large:", "refuse:")):
            probe = large if spec.startswith("large:") else refuse
            summary.update(probe(old, reg, rows, *spec.split(":")[1:]))
            Path(out).write_text(json.dumps({"revision": rev, "summary": summary,
                                             "rows": rows}, indent=1))
            continue
        domain, limit = spec.split(":")
        codecs = [reg.codec(quality=q, domain=domain) for q in reg.qualities()]
        warm = np.zeros((64, 64, 3), np.uint8)  # first calls load tables: time neither
        for control in (old, ratecontrol):
            control.to_psnr(codecs, warm, 30.0)
        for f in data.list_images(data.split_dir(domain, "test"))[:int(limit)]:
            rgb = image.load(f).rgb
            w, h = rgb.shape[1], rgb.shape[0]
            lo, hi = (metrics.bpp(len(c.encode(rgb)), w, h) for c in (codecs[0], codecs[-1]))
            targets = [("bpp", float(t)) for t in np.geomspace(lo, hi, TARGETS)]
            targets += [("psnr", metrics.psnr(rgb, c.decode(*container.parse(c.encode(rgb))))
                         + 0.3) for c in codecs[:-1]]
            for kind, target in targets:
                row = {"domain": domain, "image": f.name, "kind": kind, "target": target}
                for name, control in (("old", old), ("new", ratecontrol)):
                    try:
                        row[name] = landing(control, kind, codecs, rgb, target)
                    except Exception as e:  # noqa: BLE001 - both refuse alike; recorded
                        row[name] = {"error": str(e)}
                rows.append(row)
                print(json.dumps(row), flush=True)
        for kind in ("bpp", "psnr"):
            both = [r for r in rows if r["domain"] == domain and r["kind"] == kind
                    and "error" not in r["old"] and "error" not in r["new"]]
            s = {"targets": len(both),
                 "refused": sum("error" in r["old"] or "error" in r["new"] for r in rows
                                if r["domain"] == domain and r["kind"] == kind),
                 "same_pick": sum((r["old"]["quality"], r["old"]["step"])
                                  == (r["new"]["quality"], r["new"]["step"]) for r in both)}
            for name in ("old", "new"):
                s[f"{name}_seconds_per_target"] = float(np.mean([r[name]["seconds"]
                                                                 for r in both]))
                s[f"{name}_bytes"] = int(sum(r[name]["bytes"] for r in both))
                s[f"{name}_mean_psnr"] = float(np.mean([r[name]["psnr"] for r in both]))
            s["speedup"] = s["old_seconds_per_target"] / s["new_seconds_per_target"]
            s["bytes_change_pct"] = 100 * (s["new_bytes"] / s["old_bytes"] - 1)
            summary[f"{domain}:{kind}"] = s
            print(f"{domain} --target-{kind}: {s}", flush=True)
        Path(out).write_text(json.dumps({"revision": rev, "summary": summary, "rows": rows},
                                        indent=1))


if __name__ == "__main__":
    main()
