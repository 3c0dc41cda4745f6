"""``make bench``: measured speed, entropy-coding overhead and RD numbers on a test set.

For each installed quality of the base codec, over the ``photo`` test images:
* encode / decode time per image for nicodec and for CompressAI's own
  ``compress()``/``decompress()`` running the same weights (and their ratio);
* payload bytes over the ideal code length sum(-log2 p) under the frozen tables (overhead),
  and the header's share of the file;
* bpp and RGB PSNR; JPEG 2000 (OpenJPEG) at the same per-image rates, and the BD-rate of
  nicodec against it.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from nicodec import baselines, container, data, image, metrics, registry
from nicodec.codec import pixels_to_tensor
from nicodec.evaluate import baseline_curve

console = Console(highlight=False, width=160)


def compressai_model(reg, entry: dict, device: str):
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
    files = data.list_images(data.split_dir(domain, "test"))[:limit]
    imgs = [image.load(f).rgb for f in files]
    reg = registry.Registry()
    rows = []
    for entry in sorted(reg.bases(), key=lambda m: m.quality):
        if entry.domain != "photo":
            continue
        codec = reg.codec_by_id(entry.id, device)
        cm = compressai_model(reg, entry, device)
        acc = {k: [] for k in ("enc", "dec", "cai_enc", "cai_dec", "bpp", "psnr", "j2k_bpp",
                               "j2k_psnr")}
        payload_bytes = file_bytes = ideal_bits = 0.0
        codec.encode(imgs[0][:64, :64])  # warm-up
        for rgb in imgs:
            h, w = rgb.shape[:2]
            t_enc, blob = timed(lambda: codec.encode(rgb), repeat)
            header, payload = container.parse(blob)
            t_dec, out = timed(lambda: codec.decode(header, payload), repeat)
            x = pixels_to_tensor(rgb, device)
            with torch.no_grad():
                t_cenc, comp = timed(lambda: cm.compress(x), repeat)
                t_cdec, _ = timed(lambda: cm.decompress(comp["strings"], comp["shape"]), repeat)
            q = codec.latents(rgb)
            ideal_bits += codec.coder.ideal_bits(q)
            payload_bytes += len(payload)
            file_bytes += len(blob)
            b = metrics.bpp(len(blob), w, h)
            jn, jdec = baselines.jpeg2000(rgb, b)
            for k, v in (("enc", t_enc), ("dec", t_dec), ("cai_enc", t_cenc),
                         ("cai_dec", t_cdec), ("bpp", b), ("psnr", metrics.psnr(rgb, out)),
                         ("j2k_bpp", metrics.bpp(jn, w, h)),
                         ("j2k_psnr", metrics.psnr(rgb, jdec))):
                acc[k].append(v)
        row = {k: float(np.mean(v)) for k, v in acc.items()}
        row |= {"quality": entry.quality, "lambda": entry.lam, "id": entry.id,
                "overhead_pct": 100 * (8 * payload_bytes / ideal_bits - 1),
                "header_pct": 100 * container.HEADER_SIZE * len(imgs) / file_bytes}
        rows.append(row)
    result = {"domain": domain, "images": len(imgs), "device": device,
              "threads": torch.get_num_threads(), "repeat": repeat, "rows": rows}
    # BD against a JPEG 2000 sweep (the matched-rate points alone span too little PSNR)
    sweep = baseline_curve("jpeg2000", [(str(i), rgb) for i, rgb in enumerate(imgs)],
                           with_ms_ssim=False)
    result["jpeg2000_sweep"] = [{"bpp": p["bpp"], "psnr": p["psnr"]} for p in sweep["points"]]
    if len(rows) >= 2:
        curves = ([p["bpp"] for p in result["jpeg2000_sweep"]],
                  [p["psnr"] for p in result["jpeg2000_sweep"]],
                  [r["bpp"] for r in rows], [r["psnr"] for r in rows])
        for key, fn in (("bd_rate_vs_jpeg2000", metrics.bd_rate),
                        ("bd_psnr_vs_jpeg2000", metrics.bd_psnr)):
            try:
                result[key] = fn(*curves)
            except ValueError as e:
                result[key], result[key + "_note"] = None, str(e)
    return result


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
    from nicodec.train import bf16_is_fast

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
    t = Table(title=f"nicodec bench: {result['domain']} test set, {result['images']} images, "
                    f"{result['device']} ({result['threads']} threads), best of "
                    f"{result['repeat']}")
    for col in ("q", "bpp", "PSNR", "J2K bpp", "J2K PSNR", "enc s", "CAI enc s", "ratio",
                "dec s", "CAI dec s", "ratio", "overhead %", "header %"):
        t.add_column(col, justify="right")
    for r in result["rows"]:
        t.add_row(str(r["quality"]), f"{r['bpp']:.4f}", f"{r['psnr']:.2f}",
                  f"{r['j2k_bpp']:.4f}", f"{r['j2k_psnr']:.2f}", f"{r['enc']:.3f}",
                  f"{r['cai_enc']:.3f}", f"{r['enc'] / r['cai_enc']:.2f}", f"{r['dec']:.3f}",
                  f"{r['cai_dec']:.3f}", f"{r['dec'] / r['cai_dec']:.2f}",
                  f"{r['overhead_pct']:.4f}", f"{r['header_pct']:.3f}")
    console.print(t)
    bd, bdp = result.get("bd_rate_vs_jpeg2000"), result.get("bd_psnr_vs_jpeg2000")
    console.print("JPEG 2000 sweep: " + ", ".join(f"{p['bpp']:.3f} bpp {p['psnr']:.2f} dB"
                                                for p in result["jpeg2000_sweep"]))
    console.print("BD-rate of nicodec against JPEG 2000 (OpenJPEG sweep): " +
                  (f"{bd:+.2f} %" if bd is not None else
                   f"n/a ({result.get('bd_rate_vs_jpeg2000_note')})") +
                  ("" if bdp is None else f"; BD-PSNR {bdp:+.2f} dB"))
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
    args = ap.parse_args()
    device = registry.pick_device(args.device)
    result = {"startup_s": startup_times()}
    show_startup(result["startup_s"])
    result |= bench(args.domain, device, args.repeat, args.limit)
    show(result)
    if args.train_steps:
        result["training"] = training_throughput(args.domain, device, args.train_steps)
        show_training(result["training"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
