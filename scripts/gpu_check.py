"""The GPU check of issue 14 (run it on a machine with CUDA; never needed elsewhere).

    .venv/bin/python scripts/gpu_check.py [--json gpu-check.json]

1. encode and decode the photo test images on CUDA and on CPU;
2. decode the CUDA-encoded files on CPU and the CPU-encoded ones on CUDA, and report the
   pixel difference to the same-device decoding (max grey levels and PSNR) and whether the
   latents (the payloads) agree;
3. the encode/decode throughput (megapixels per second) of each device.
Run the test suite on the same machine too (`make test`; `--device auto` picks CUDA).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nicodec import container, data, image, metrics, registry  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None)
    ap.add_argument("--limit", type=int, default=10)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA device here")
    reg = registry.Registry()
    imgs = [image.load(f).rgb for f in
            data.list_images(data.split_dir("photo", "test"))[:args.limit]]
    mp = sum(i.shape[0] * i.shape[1] for i in imgs) / 1e6
    out = {"device": torch.cuda.get_device_name(0), "images": len(imgs), "qualities": {}}
    for q in reg.qualities():
        codecs = {d: reg.codec(quality=q, device=d) for d in ("cpu", "cuda")}
        row = {}
        files = {}
        for d, c in codecs.items():
            c.encode(imgs[0][:64, :64])  # warm-up
            t0 = time.perf_counter()
            files[d] = [c.encode(i) for i in imgs]
            if d == "cuda":
                torch.cuda.synchronize()
            row[f"{d}_encode_mp_s"] = mp / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            for f in files[d]:
                c.decode(*container.parse(f))
            row[f"{d}_decode_mp_s"] = mp / (time.perf_counter() - t0)
        row["same_payloads"] = sum(a == b for a, b in zip(files["cpu"], files["cuda"]))
        worst, psnrs = 0, []
        for src, dst in (("cuda", "cpu"), ("cpu", "cuda")):
            for f in files[src]:
                h, p = container.parse(f)
                here = codecs[src].decode(h, p)
                there = codecs[dst].decode(h, p)
                worst = max(worst, int(np.abs(here.astype(int) - there).max()))
                psnrs.append(metrics.psnr(here, there))
        row["cross_device_max_diff"] = worst
        row["cross_device_min_psnr"] = min(psnrs)
        out["qualities"][q] = row
        print(q, json.dumps(row))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
