"""``make bench``: measured speed, entropy-coding overhead and RD numbers on a test set.

For each installed quality of the base codec, over the ``photo`` test images:
* encode / decode time per image for nicodec and for CompressAI's own
  ``compress()``/``decompress()`` running the same weights (and their ratio);
* payload bytes over the ideal code length sum(-log2 p) under the frozen tables (overhead),
  and the header's share of the file;
* bpp and RGB PSNR per generation, its files as ``nicodec encode`` writes them (per-image
  quantisation grids where a model has a ``step_slope``, :mod:`nicodec.quantstep`; the
  newest generation on the unit grid too); BD-rate and BD-PSNR against JPEG 2000 and WebP sweeps
  (settings of :mod:`nicodec.baselines`) and against every older generation; the PSNR step between
  qualities;
* encoder effort: BD-rate of each effort against effort 1 and encode seconds per
  megapixel on the photo, astro and screen test sets; rate control's error over a sweep of
  ``--target-bpp`` targets;
* start-up times and training throughput (fp32 and the fast path).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from nicodec import container, data, image, metrics, registry
from nicodec.codec import REFERENCE_THREADS, pixels_to_tensor, reference_threads
from nicodec.evaluate import baseline_curve

console = Console(highlight=False, width=160)


def compressai_model(reg, entry: registry.BaseModel, device: str):
    """CompressAI's FactorizedPrior class loaded with the same weights."""
    from compressai.entropy_models import EntropyBottleneck
    from compressai.models import FactorizedPrior

    from nicodec.network import EB_FILTERS

    cm = FactorizedPrior(64, 64)
    cm.entropy_bottleneck = EntropyBottleneck(64, filters=EB_FILTERS)
    sd = {k: v for k, v in reg.base_network(entry).state_dict().items()
          if not k.startswith("entropy_bottleneck._")}
    torch.nn.Module.load_state_dict(cm, sd, strict=False)  # CompressAI wants buffers too
    cm.eval().update(force=True)
    return cm.to(device)


def timed(fn, repeat: int):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def bench(domain: str, device: str, repeat: int, limit: int | None) -> dict:
    """Speed, overhead and RD of every generation of the base codec on ``domain``'s test
    set; BD-rates against the JPEG 2000 and WebP sweeps and against every older generation."""
    files = data.list_images(data.split_dir(domain, "test"))[:limit]
    imgs = [image.load(f).rgb for f in files]
    reg = registry.Registry()
    result = {"domain": domain, "images": len(imgs), "device": device,
              "threads": REFERENCE_THREADS if device == "cpu" else torch.get_num_threads(),
              "repeat": repeat, "generations": {}}
    named = [(str(i), rgb) for i, rgb in enumerate(imgs)]
    sweeps = {kind: baseline_curve(kind, named, with_ms_ssim=False)["points"]
              for kind in ("jpeg2000", "webp")}
    result["sweeps"] = {k: [{"bpp": p["bpp"], "psnr": p["psnr"]} for p in v]
                        for k, v in sweeps.items()}
    measured: dict[str, dict] = {}  # by model ID: a generation may keep older qualities
    for gen in reg.generations():
        entries = reg.base_set(generation=gen)
        for entry in entries:
            if entry.id not in measured:
                measured[entry.id] = _bench_model(reg, entry, imgs, device, repeat)
        rows = [measured[entry.id] for entry in entries]
        g = {"rows": rows, "steps": [m.steps for m in entries],
             "ids": [m.id for m in entries], "model_generations": [m.generation for m in entries]}
        curve = ([r["bpp"] for r in rows], [r["psnr"] for r in rows])
        refs = {k: ([p["bpp"] for p in v], [p["psnr"] for p in v])
                for k, v in result["sweeps"].items()}
        for old, o in result["generations"].items():  # every older generation
            refs[f"generation {old}"] = ([r["bpp"] for r in o["rows"]],
                                         [r["psnr"] for r in o["rows"]])
        for ref, (rb, rp) in refs.items():
            for key, fn in (("bd_rate", metrics.bd_rate), ("bd_psnr", metrics.bd_psnr)):
                try:
                    g.setdefault(f"{key}_vs", {})[ref] = fn(rb, rp, *curve)
                except ValueError as e:
                    g.setdefault(f"{key}_vs", {})[ref] = None
                    g.setdefault("notes", []).append(f"{key} vs {ref}: {e}")
        psnrs = [r["psnr"] for r in rows]
        g["quality_steps_db"] = [b - a for a, b in zip(psnrs, psnrs[1:])]
        g["span_db"] = psnrs[-1] - psnrs[0] if psnrs else None
        result["generations"][gen] = g
    newest = reg.base_set()
    if any(m.step_slope for m in newest):  # what the per-image grids buy: the unit grid too
        rows = [_bench_model(reg, m, imgs, device, repeat, step=0) for m in newest]
        unit = ([r["bpp"] for r in rows], [r["psnr"] for r in rows])
        auto = result["generations"][max(result["generations"])]["rows"]
        refs = {k: ([p["bpp"] for p in v], [p["psnr"] for p in v])
                for k, v in result["sweeps"].items()}
        refs["unit grid"] = unit
        u = {"rows": rows, "bd_rate_vs": {}, "bd_psnr_vs": {}}
        for ref, (rb, rp) in refs.items():
            test = unit if ref != "unit grid" else ([r["bpp"] for r in auto],
                                                    [r["psnr"] for r in auto])
            for key, fn in (("bd_rate", metrics.bd_rate), ("bd_psnr", metrics.bd_psnr)):
                try:
                    u[f"{key}_vs"][ref] = fn(rb, rp, *test)
                except ValueError:
                    u[f"{key}_vs"][ref] = None
        result["unit_grid"] = u
    return result


def _bench_model(reg, entry, imgs, device, repeat, step: int | str = "auto") -> dict:
    """Speed and RD of one base model on ``imgs``, its files written on grid ``step``
    (``"auto"``: what ``nicodec encode`` writes, :mod:`nicodec.quantstep`)."""
    codec = reg.codec_by_id(entry.id, device)
    cm = compressai_model(reg, entry, device)
    acc = {k: [] for k in ("enc", "dec", "cai_enc", "cai_dec", "bpp", "psnr", "grid")}
    payload_bytes = file_bytes = ideal_bits = 0.0
    codec.encode(imgs[0][:64, :64])  # warm-up
    for rgb in imgs:
        h, w = rgb.shape[:2]
        t_enc, blob = timed(lambda: codec.encode(rgb, step=step), repeat)
        header, payload = container.parse(blob)
        grid = header.step
        t_dec, out = timed(lambda: codec.decode(header, payload), repeat)
        x = pixels_to_tensor(rgb, device)
        with torch.no_grad(), reference_threads(device):  # the threads the codec runs on
            t_cenc, comp = timed(lambda: cm.compress(x), repeat)
            t_cdec, _ = timed(lambda: cm.decompress(comp["strings"], comp["shape"]), repeat)
        ideal_bits += codec.coder.ideal_bits(codec.latents(rgb, grid), grid)
        payload_bytes += len(payload)
        file_bytes += len(blob)
        for k, v in (("enc", t_enc), ("dec", t_dec), ("cai_enc", t_cenc),
                     ("cai_dec", t_cdec), ("bpp", metrics.bpp(len(blob), w, h)),
                     ("psnr", metrics.psnr(rgb, out)), ("grid", grid)):
            acc[k].append(v)
    row = {k: float(np.mean(v)) for k, v in acc.items()}
    return row | {"quality": entry.quality, "lambda": entry.lam, "id": entry.id,
                  "overhead_pct": 100 * (8 * payload_bytes / ideal_bits - 1),
                  "header_pct": 100 * container.HEADER_SIZE * len(imgs) / file_bytes}


# --------------------------------------------------------------------------- memory
def memory_bench(megapixels=(24.0,), keep_whole_mp: float = 2.0) -> list[dict]:
    """Peak RSS and wall time of ``nicodec encode`` and ``decode`` (fresh processes) on
    large images made by mirroring a photo test image, and the PSNR of tiled against
    whole-image decoding on a ``keep_whole_mp`` image."""
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from PIL import Image

    src = image.load(data.list_images(data.split_dir("photo", "test"))[0]).rgb
    rows = []
    probe = ("import resource, subprocess, sys, time; t = time.time(); "
             "r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, time.time() - t, "
             "r.returncode, r.stderr.strip().splitlines()[-1:] if r.returncode else '')")
    nic = [sys.executable, "-m", "nicodec.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        for mp in megapixels:
            side = int((mp * 1e6 * 1.5) ** 0.5)
            w, h = side, int(mp * 1e6 / side)
            big = _mirrored(src, h, w)
            png, out, dec = (Path(tmp) / n for n in ("big.png", "big.nic", "big-dec.png"))
            Image.fromarray(big).save(png, compress_level=1)
            row = {"megapixels": round(w * h / 1e6, 1), "size": f"{w}x{h}"}
            limit = ["--max-pixels", str(w * h)]
            for step, args in (("encode", ["encode", str(png), "-o", str(out)] + limit),
                               ("decode", ["decode", str(out), "-o", str(dec)] + limit)):
                r = subprocess.run([sys.executable, "-c", probe, *nic, *args],
                                   capture_output=True, text=True)
                kb, secs, rc, tail = r.stdout.split(" ", 3)
                row[f"{step}_peak_rss_gb"] = round(int(kb) / 1e6, 2)
                row[f"{step}_s"] = round(float(secs), 1)
                row[f"{step}_ok"] = rc == "0"
            if row["decode_ok"]:
                got = np.asarray(Image.open(dec).convert("RGB"))
                row["psnr"] = metrics.psnr(big, got)
            rows.append(row)
    # tiled against whole-image decoding of the same latents
    from nicodec import tiling

    reg = registry.Registry()
    codec = reg.codec(quality=3)
    side = int((keep_whole_mp * 1e6) ** 0.5)
    img = _mirrored(src, side, side)
    q = codec.latents(img)
    whole = codec.reconstruct(q, side, side, tiled=False)
    tiled = codec.reconstruct(q, side, side, tiled=True)
    rows.append({"tiled_vs_whole_psnr": metrics.psnr(whole, tiled),
                 "tiled_vs_whole_max_diff": int(np.abs(whole.astype(int) - tiled).max()),
                 "megapixels": round(side * side / 1e6, 1), "tile_latents": tiling.TILE,
                 "halo_latents": tiling.HALO})
    return rows


def _mirrored(src: np.ndarray, h: int, w: int) -> np.ndarray:
    """An h x w image tiled from ``src`` and its mirror images (no seams at the joins)."""
    tile = np.concatenate([src, src[::-1]], 0)
    tile = np.concatenate([tile, tile[:, ::-1]], 1)
    return np.tile(tile, (h // tile.shape[0] + 1, w // tile.shape[1] + 1, 1))[:h, :w]


def show_memory(rows: list[dict]) -> None:
    for r in rows:
        if "tiled_vs_whole_psnr" in r:
            console.print(f"tiled vs whole-image decoding of the same latents ({r['megapixels']} "
                          f"MP, tiles of {r['tile_latents']} latents, halo {r['halo_latents']}): "
                          f"PSNR {r['tiled_vs_whole_psnr']:.2f} dB, max difference "
                          f"{r['tiled_vs_whole_max_diff']} grey level(s)")
        else:
            console.print(f"{r['size']} ({r['megapixels']} MP): encode {r['encode_s']} s, peak "
                          f"RSS {r['encode_peak_rss_gb']} GB; decode {r['decode_s']} s, peak RSS "
                          f"{r['decode_peak_rss_gb']} GB; PSNR {r.get('psnr', float('nan')):.2f} dB"
                          + ("" if r["encode_ok"] and r["decode_ok"] else "  FAILED"))


# --------------------------------------------------------------------------- effort
ROUNDING_LOTTERY = "m98-14a254.png"  # the dark astro image of docs/results/probe-rounding


def effort_point(codec, rgb: np.ndarray, level: int) -> tuple[float, float, float]:
    """(bpp, PSNR, encode seconds) of one image encoded at an effort level and decoded."""
    from nicodec import effort

    t0 = time.perf_counter()
    blob = effort.encode(codec, rgb, level=level, step="auto")  # as `nicodec encode`
    seconds = time.perf_counter() - t0
    rec = codec.decode(*container.parse(blob))
    return (metrics.bpp(len(blob), rgb.shape[1], rgb.shape[0]), metrics.psnr(rgb, rec),
            seconds)


def effort_curve(codecs, imgs: list[tuple[str, np.ndarray]], level: int):
    """(points, encode seconds per megapixel, per image) of named images at an effort level:
    points the mean bpp and PSNR per codec's quality, per image ``{(quality, name): (bpp,
    PSNR)}``."""
    points, seconds, pixels, each = [], 0.0, 0, {}
    for codec in codecs:
        for name, rgb in imgs:
            b, p, s = effort_point(codec, rgb, level)
            seconds += s
            pixels += rgb.shape[0] * rgb.shape[1]
            each[codec.quality, name] = (b, p)
        mine = [v for (q, _), v in each.items() if q == codec.quality]
        points.append({"quality": codec.quality, "bpp": float(np.mean([v[0] for v in mine])),
                       "psnr": float(np.mean([v[1] for v in mine]))})
    return points, seconds / (pixels / 1e6), each


def effort_bench(device: str, limit: int | None, targets: int = 6) -> dict:
    """Per test set (photo; astro and screen with their adapters): RD and encode time per
    megapixel of each effort, BD-rate against effort 1; the rounding-lottery image; and
    rate control's achieved bpp against a sweep of targets."""
    from nicodec import effort

    reg = registry.Registry()
    out = {}
    for domain in ("photo", "astro", "screen"):
        files = data.list_images(data.split_dir(domain, "test"))
        chosen = files[:limit]
        if domain == "astro":
            chosen += [f for f in files if f.name == ROUNDING_LOTTERY and f not in chosen]
        imgs = [(f.name, image.load(f).rgb) for f in chosen]
        codecs = [reg.codec(quality=q, domain=domain, device=device) for q in reg.qualities()]
        per_effort = {}
        for level in effort.EFFORTS:
            points, s_per_mp, each = effort_curve(codecs, imgs, level)
            per_effort[level] = {"points": points, "s_per_mp": s_per_mp}
            lottery = {q: {"bpp": b, "psnr": p} for (q, name), (b, p) in each.items()
                       if name == ROUNDING_LOTTERY}
            if lottery:
                per_effort[level]["rounding_lottery"] = lottery
        ref = per_effort[1]["points"]
        for level, row in per_effort.items():
            args = ([p["bpp"] for p in ref], [p["psnr"] for p in ref],
                    [p["bpp"] for p in row["points"]], [p["psnr"] for p in row["points"]])
            for key, fn in (("bd_rate_vs_effort1", metrics.bd_rate),
                            ("bd_psnr_vs_effort1", metrics.bd_psnr)):
                try:
                    row[key] = fn(*args) if level > 1 else 0.0
                except ValueError as e:  # curves too far apart for it: say so
                    row[key], row[key + "_note"] = None, str(e)
        out[domain] = {"images": [n for n, _ in imgs], "efforts": per_effort,
                       "rate_control": _rate_control(codecs, imgs, targets)}
    return out


def _rate_control(codecs, imgs, targets: int) -> dict:
    """--target-bpp per image over ``targets`` targets spread (geometrically) between
    what its lowest and its highest quality give on the unit grid: achieved against asked,
    and where the codecs have grids, the same targets landed on the unit grid only (0.18's
    rate control, ``--step 0``): mean bpp, PSNR and seconds per target of each. ``missed``
    counts the refusals of the default rate control (``missed_cases`` lists all)."""
    from nicodec import ratecontrol

    grids = any(c.steps for c in codecs)
    errors, missed, pairs = [], [], []
    seconds = {True: 0.0, False: 0.0}
    for name, rgb in imgs:
        lo, hi = (metrics.bpp(len(c.encode(rgb)), rgb.shape[1], rgb.shape[0])
                  for c in (codecs[0], codecs[-1]))
        for target in np.geomspace(lo, hi, targets):
            got = {}
            for mode in (True, False) if grids else (True,):
                t0 = time.perf_counter()
                try:
                    got[mode] = ratecontrol.to_bpp(codecs, rgb, float(target), grids=mode)
                except Exception as e:  # noqa: BLE001 - counted, reported
                    missed.append(f"{name} {target:.4f}{'' if mode else ' (unit grid)'}: {e}")
                seconds[mode] += time.perf_counter() - t0
            if True in got:
                errors.append(100 * (got[True].bpp / target - 1))
            if len(got) == 2:
                pairs.append([(g.bpp, g.psnr, g.step) for g in (got[True], got[False])])
    out = {"targets": len(imgs) * targets, "missed_cases": missed,
           "missed": sum("(unit grid)" not in m for m in missed),
           "mean_abs_error_pct": float(np.mean(np.abs(errors))),
           "worst_error_pct": float(np.max(np.abs(errors))),
           "within_3pct": int(sum(abs(e) <= 3 for e in errors))}
    if pairs:
        a = np.array(pairs)  # (n, mode, [bpp, psnr, step])
        n = len(imgs) * targets
        out["grids_vs_unit"] = {
            "pairs": len(pairs), "bpp": [float(a[:, 0, 0].mean()), float(a[:, 1, 0].mean())],
            "psnr": [float(a[:, 0, 1].mean()), float(a[:, 1, 1].mean())],
            "psnr_gain_db": float((a[:, 0, 1] - a[:, 1, 1]).mean()),
            "psnr_gain_db_max": float((a[:, 0, 1] - a[:, 1, 1]).max()),
            "on_other_grids": int((a[:, 0, 2] != 0).sum()),
            "seconds_per_target": [seconds[True] / n, seconds[False] / n]}
    return out


def _psnr_control(codecs, imgs) -> dict:
    """--target-psnr per image at 0.3 dB above what each of its lower qualities gives on
    the unit grid: the file sizes landed with grids and on the unit grid only (``--step
    0``), and seconds per target of each."""
    from nicodec import ratecontrol

    sizes, seconds, missed = [], {True: 0.0, False: 0.0}, []
    for name, rgb in imgs:
        for c in codecs[:-1]:
            target = metrics.psnr(rgb, c.decode(*container.parse(c.encode(rgb)))) + 0.3
            got = {}
            for mode in (True, False):
                t0 = time.perf_counter()
                try:
                    got[mode] = ratecontrol.to_psnr(codecs, rgb, target, grids=mode)
                except Exception as e:  # noqa: BLE001 - counted, reported
                    missed.append(f"{name} {target:.2f} dB{'' if mode else ' (unit grid)'}: "
                                  f"{e}")
                seconds[mode] += time.perf_counter() - t0
            if len(got) == 2:
                sizes.append([len(got[True].data), len(got[False].data), got[True].step != 0])
    a = np.array(sizes, dtype=float)
    n = len(imgs) * (len(codecs) - 1)
    return {"targets": n, "missed": missed, "bytes": [float(a[:, 0].sum()), float(a[:, 1].sum())],
            "saved_pct": float(100 * (1 - a[:, 0].sum() / a[:, 1].sum())),
            "on_other_grids": int(a[:, 2].sum()),
            "seconds_per_target": [seconds[True] / n, seconds[False] / n]}


def _show_rate_control(rc: dict, indent: str = "  ") -> None:
    console.print(f"{indent}--target-bpp over {rc['targets']} targets: {rc['within_3pct']} "
                  f"within +-3 %, mean |error| {rc['mean_abs_error_pct']:.2f} %, worst "
                  f"{rc['worst_error_pct']:.2f} %, {rc['missed']} refused")
    g = rc.get("grids_vs_unit")
    if g:
        console.print(f"{indent}  landed on grids against the unit grid only (--step 0): "
                      f"{g['bpp'][0]:.4f} bpp {g['psnr'][0]:.2f} dB against {g['bpp'][1]:.4f} "
                      f"bpp {g['psnr'][1]:.2f} dB, PSNR {g['psnr_gain_db']:+.2f} dB on average "
                      f"(at most {g['psnr_gain_db_max']:+.2f}), {g['on_other_grids']} of "
                      f"{g['pairs']} on another grid; {g['seconds_per_target'][0]:.2f} s against "
                      f"{g['seconds_per_target'][1]:.2f} s per target")
    p = rc.get("psnr_control")
    if p:
        console.print(f"{indent}--target-psnr (0.3 dB above q1-q3) over {p['targets']} targets: "
                      f"on grids {p['saved_pct']:.2f} % fewer bytes than on the unit grid "
                      f"only, {p['on_other_grids']} on another grid; refused: "
                      f"{sum('(unit grid)' not in m for m in p['missed'])} on grids, "
                      f"{sum('(unit grid)' in m for m in p['missed'])} on the unit grid only; "
                      f"{p['seconds_per_target'][0]:.2f} s against "
                      f"{p['seconds_per_target'][1]:.2f} s per target")


def ratecontrol_bench(device: str, limit: int | None, targets: int = 6) -> dict:
    """:func:`_rate_control` alone, on each test set with its own codec."""
    reg = registry.Registry()
    out = {}
    for domain in ("photo", "astro", "screen"):
        imgs = [(f.name, image.load(f).rgb)
                for f in data.list_images(data.split_dir(domain, "test"))[:limit]]
        codecs = [reg.codec(quality=q, domain=domain, device=device) for q in reg.qualities()]
        out[domain] = _rate_control(codecs, imgs, targets)
        if any(c.steps for c in codecs):
            out[domain]["psnr_control"] = _psnr_control(codecs, imgs)
    return out


def _maybe(value: float | None, unit: str) -> str:
    return "n/a" if value is None else f"{value:+.2f} {unit}"


def show_effort(result: dict) -> None:
    from nicodec.effort import EFFORTS

    for domain, r in result.items():
        t = Table(title=f"encoder effort, {domain} test set ({len(r['images'])} images)")
        for col in ("effort", "what", "bpp per quality", "PSNR per quality", "BD-rate vs 1",
                    "BD-PSNR vs 1", "encode s/MP"):
            t.add_column(col, justify="right")
        for level, row in r["efforts"].items():
            t.add_row(str(level), EFFORTS[int(level)].description,
                      " ".join(f"{p['bpp']:.3f}" for p in row["points"]),
                      " ".join(f"{p['psnr']:.2f}" for p in row["points"]),
                      _maybe(row["bd_rate_vs_effort1"], "%"),
                      _maybe(row["bd_psnr_vs_effort1"], "dB"), f"{row['s_per_mp']:.1f}")
        console.print(t)
        for level, row in r["efforts"].items():
            if "rounding_lottery" in row:
                console.print(f"  {ROUNDING_LOTTERY} at effort {level}: " + ", ".join(
                    f"q{q} {v['bpp']:.3f} bpp {v['psnr']:.2f} dB"
                    for q, v in row["rounding_lottery"].items()))
        _show_rate_control(r["rate_control"])


def training_throughput(domain: str, device: str, steps: int, warmup: int = 20) -> list[dict]:
    """Steps/s and megapixels/s of the real training loop (base network, batch 8 of 128x128
    crops, lambda of q3) on the fp32 path and on the fast path, measured after ``warmup``
    steps (which include torch.compile's compilation)."""
    from nicodec.network import FactorizedPrior
    from nicodec.train import TrainConfig, fast_settings, train

    files = data.list_images(data.split_dir(domain, "test"))
    rows = []
    for label, fast in (("fp32", False), ("fast", True)):
        sampler = data.CropSampler.from_files(files, crop=128)
        cfg = TrainConfig(lam=0.016, steps=warmup + steps, fast=fast, compile=fast,
                          ckpt_every=warmup, log_every=warmup)
        marks = {}
        torch.manual_seed(0)
        train(FactorizedPrior(), sampler, cfg, device=device, console_log=False,
              on_checkpoint=lambda m, step, stats: marks.setdefault(step, time.perf_counter()))
        seconds = marks[warmup + steps] - marks[warmup]
        fmt, dtype, compiled = fast_settings(cfg, device, steps)
        rows.append({"path": label, "steps_per_s": steps / seconds,
                     "mpix_per_s": steps * cfg.batch * cfg.crop ** 2 / 1e6 / seconds,
                     "ms_per_step": 1000 * seconds / steps,
                     "settings": f"{'channels_last' if fmt == torch.channels_last else 'NCHW'}"
                                 f", {'bf16' if dtype else 'fp32'} transforms"
                                 f"{', torch.compile' if compiled else ''}"})
    return rows


def show_training(rows: list[dict]) -> None:
    t = Table(title="training throughput: base network, batch 8 of 128x128 crops")
    for col in ("path", "settings", "ms/step", "steps/s", "Mpixel/s", "speed-up"):
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(r["path"], r["settings"], f"{r['ms_per_step']:.0f}",
                  f"{r['steps_per_s']:.2f}", f"{r['mpix_per_s']:.3f}",
                  f"{rows[0]['ms_per_step'] / r['ms_per_step']:.2f}x")
    console.print(t)
    from nicodec.inference import bf16_is_fast

    units = "yes (bf16 transforms)" if bf16_is_fast("cpu") else "no (fp32 transforms)"
    console.print(f"CPU bf16 units (AMX or AVX512-BF16): {units}")


def startup_times(repeat: int = 3) -> dict:
    """Wall time (best of ``repeat``) of ``nicodec info`` and ``nicodec decode`` on a small
    file, and of ``python -c "import torch"``, each a fresh process."""
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from nicodec import api

    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as d:
        nic = Path(d) / "small.nic"
        nic.write_bytes(api.compress(small, quality=1, device="cpu"))
        cli = [sys.executable, "-m", "nicodec.cli"]
        commands = {"nicodec info small.nic": cli + ["info", str(nic)],
                    "nicodec decode small.nic": cli + ["decode", str(nic), "-o",
                                                       str(Path(d) / "o.png"), "--device",
                                                       "cpu"],
                    'python -c "import torch"': [sys.executable, "-c", "import torch"]}
        times = {}
        for label, cmd in commands.items():
            best = float("inf")
            for _ in range(repeat):
                t0 = time.perf_counter()
                subprocess.run(cmd, check=True, capture_output=True)
                best = min(best, time.perf_counter() - t0)
            times[label] = best
    return times


def show_startup(times: dict) -> None:
    console.print("startup (fresh process, best of 3): " + ", ".join(
        f"{label} {t:.2f} s" for label, t in times.items()))


def show(result: dict) -> None:
    for gen, g in result["generations"].items():
        older: dict[int, list[str]] = {}  # qualities this generation kept from older ones
        for r, mg in zip(g["rows"], g.get("model_generations", [])):
            if mg != int(gen):
                older.setdefault(mg, []).append(f"q{r['quality']}")
        kept = [f"{', '.join(qs)} of generation {mg}" for mg, qs in sorted(older.items())]
        t = Table(title=f"nicodec generation {gen} (steps {g['steps']}"
                        + (f"; {', '.join(kept)}" if kept else "") + f"): {result['domain']} "
                        f"test set, {result['images']} images, {result['device']} "
                        f"({result['threads']} threads), best of {result['repeat']}")
        for col in ("q", "bpp", "PSNR", "grid", "enc s", "CAI enc s", "ratio", "dec s",
                    "CAI dec s", "ratio", "overhead %", "header %"):
            t.add_column(col, justify="right")
        for r in g["rows"]:
            t.add_row(str(r["quality"]), f"{r['bpp']:.4f}", f"{r['psnr']:.2f}",
                      f"{r.get('grid', 0):+.1f}", f"{r['enc']:.3f}", f"{r['cai_enc']:.3f}", f"{r['enc'] / r['cai_enc']:.2f}",
                      f"{r['dec']:.3f}", f"{r['cai_dec']:.3f}",
                      f"{r['dec'] / r['cai_dec']:.2f}", f"{r['overhead_pct']:.4f}",
                      f"{r['header_pct']:.3f}")
        console.print(t)
        for ref in g["bd_rate_vs"]:
            bd, bdp = g["bd_rate_vs"][ref], g["bd_psnr_vs"][ref]
            console.print(f"  generation {gen} against {ref}: BD-rate " +
                          ("n/a" if bd is None else f"{bd:+.2f} %") + ", BD-PSNR " +
                          ("n/a" if bdp is None else f"{bdp:+.2f} dB"))
        console.print("  PSNR steps between qualities: " +
                      ", ".join(f"{d:+.2f} dB" for d in g["quality_steps_db"]) +
                      f"; q4 - q1 = {g['span_db']:.2f} dB")
        for note in g.get("notes", []):
            console.print(f"  note: {note}")
    if "unit_grid" in result:
        u = result["unit_grid"]
        console.print("  the newest generation on the unit grid (--step 0, files every "
                      "release reads): " + ", ".join(f"q{r['quality']} {r['bpp']:.4f} bpp "
                                                     f"{r['psnr']:.2f} dB" for r in u["rows"]))
        for ref in u["bd_rate_vs"]:
            bd, bdp = u["bd_rate_vs"][ref], u["bd_psnr_vs"][ref]
            who = ("per-image grids (--step auto) against the unit grid" if ref == "unit grid"
                   else f"unit grid against {ref}")
            console.print(f"  {who}: BD-rate " + ("n/a" if bd is None else f"{bd:+.2f} %") +
                          ", BD-PSNR " + ("n/a" if bdp is None else f"{bdp:+.2f} dB"))
    for kind, pts in result["sweeps"].items():
        console.print(f"{kind} sweep: " + ", ".join(f"{p['bpp']:.3f} bpp {p['psnr']:.2f} dB"
                                                    for p in pts))
    console.print("ratio = nicodec time / CompressAI time (below 1: nicodec is faster); "
                  "overhead = payload bits over the ideal sum of -log2 p")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--domain", default="photo")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--json", default=None, help="also write the numbers here")
    ap.add_argument("--train-steps", type=int, default=100,
                    help="timed steps per training path (0: skip the training throughput)")
    ap.add_argument("--effort-limit", type=int, default=5,
                    help="images per test set for the effort bench (0: skip it; the astro "
                         "set always adds its rounding-lottery image)")
    ap.add_argument("--memory-mp", type=float, nargs="*", default=[24.0],
                    help="image sizes (megapixels) for the memory bench (none: skip it)")
    ap.add_argument("--only", choices=["codec", "effort", "ratecontrol", "training", "startup",
                                       "memory"],
                    default=None,
                    help="run one part only")
    args = ap.parse_args()
    device = registry.pick_device(args.device)
    part = lambda name: args.only in (None, name)  # noqa: E731
    result = {}
    if part("startup"):
        result["startup_s"] = startup_times()
        show_startup(result["startup_s"])
    if part("codec"):
        result |= bench(args.domain, device, args.repeat, args.limit)
        show(result)
    if part("effort") and args.effort_limit:
        result["effort"] = effort_bench(device, args.effort_limit)
        show_effort(result["effort"])
    if args.only == "ratecontrol":
        result["ratecontrol"] = ratecontrol_bench(device, args.limit)
        for domain, rc in result["ratecontrol"].items():
            console.print(f"{domain}:")
            _show_rate_control(rc)
            for case in rc["missed_cases"]:
                console.print(f"  refused: {case}")
    if part("memory") and args.memory_mp:
        result["memory"] = memory_bench(args.memory_mp)
        show_memory(result["memory"])
    if part("training") and args.train_steps:
        result["training"] = training_throughput(args.domain, device, args.train_steps)
        show_training(result["training"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
