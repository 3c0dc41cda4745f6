"""A fuzzer for the decoder: corrupt .nic files must be refused with one clear error.

    .venv/bin/python scripts/fuzz.py [--seed 0] [--count 2000] [--json docs/results/fuzz.json]

From a corpus of small real files (shipped photo models q1-q4, the astro adapter, a
greyscale image), it decodes, with a fixed seed:

* payload mutations: 1-4 random bytes changed, the CRC recomputed (so only the decoder's
  own checks stand between the garbage and the user);
* truncations and extensions of the payload, the length field and the CRC fixed up;
* header-field edits: a random value in one field (quality, channels, coder, width,
  height, flags, model IDs), the CRC recomputed;
* size-inflated headers: width and height enlarged up to 1024x1024, the CRC recomputed.

Each input ends as *refused* (NicodecError: one clear line), *decoded* (no error), a
*crash* (any other exception: a traceback a user would see) or a *hang* (over 5 s). Targets:
0 crashes, 0 hangs, and >= 99 % of payload mutations refused.
"""

from __future__ import annotations

import argparse
import json
import signal
import struct
import sys
import time
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nicodec import api, container, registry  # noqa: E402
from nicodec.errors import NicodecError  # noqa: E402

HANG_S = 5
FIELDS = {  # name: (offset, struct format) in the 32-byte header
    "quality": (5, "<B"), "channels": (6, "<B"), "coder": (7, "<B"),
    "coder_version": (8, "<H"), "width": (10, "<H"), "height": (12, "<H"),
    "flags": (14, "<H"), "base_id": (16, "<I"), "adapter_id": (20, "<I"),
}


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


def recrc(d: bytes) -> bytes:
    head = d[:container.CRC_OFFSET]
    return head + struct.pack("<I", zlib.crc32(d[32:], zlib.crc32(head))) + d[32:]


def with_payload(d: bytes, payload: bytes) -> bytes:
    head = d[:24] + struct.pack("<I", len(payload)) + d[28:32]
    return recrc(head + payload)


def corpus(reg: registry.Registry) -> list[tuple[str, bytes]]:
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:48, 0:64] / 64
    img = np.stack([np.sin(7 * xx + c) * np.cos(5 * yy - c) for c in range(3)], -1)
    img = np.clip((img + 1) * 110 + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
    files = [(f"photo-q{q}", api.Encoder(quality=q, registry=reg).compress(img))
             for q in reg.qualities()]
    files.append(("grey-q2", api.Encoder(quality=2, registry=reg).compress(img[..., 0])))
    if any(p.name == "astro" for p in reg.packages()):
        files.append(("astro-q3", api.Encoder(quality=3, domain="astro",
                                              registry=reg).compress(img)))
    return files


def mutations(files, rng, count):
    """(kind, source name, bytes) inputs, ``count`` of each kind."""
    for _ in range(count):
        name, d = files[rng.integers(len(files))]
        b = bytearray(d)
        for _ in range(rng.integers(1, 5)):
            i = rng.integers(32, len(b))
            b[i] = (b[i] + rng.integers(1, 256)) % 256
        yield "payload mutation", name, recrc(bytes(b))
    for _ in range(count):
        name, d = files[rng.integers(len(files))]
        payload = d[32:]
        if rng.random() < 0.5:
            cut = rng.integers(0, len(payload))
            yield "truncation", name, with_payload(d, payload[:cut])
        else:
            extra = rng.integers(0, 256, rng.integers(1, 64), dtype=np.uint8).tobytes()
            yield "extension", name, with_payload(d, payload + extra)
    for _ in range(count):
        name, d = files[rng.integers(len(files))]
        field = list(FIELDS)[rng.integers(len(FIELDS))]
        off, fmt = FIELDS[field]
        size = struct.calcsize(fmt)
        value = int(rng.integers(0, 1 << (8 * size), dtype=np.uint64))
        b = d[:off] + struct.pack(fmt, value) + d[off + size:]
        yield f"header edit ({field})", name, recrc(b)
    for _ in range(count):
        name, d = files[rng.integers(len(files))]
        w, h = struct.unpack_from("<HH", d, 10)
        w2, h2 = (int(rng.integers(w, 1025)), int(rng.integers(h, 1025)))
        if (w2, h2) == (w, h):
            w2 += 16
        yield "size-inflated header", name, recrc(d[:10] + struct.pack("<HH", w2, h2) + d[14:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--count", type=int, default=500, help="inputs per kind of corruption")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    reg = registry.Registry()
    decoder = api.Decoder(device="cpu", registry=reg)
    files = corpus(reg)
    rng = np.random.default_rng(args.seed)
    signal.signal(signal.SIGALRM, _alarm)
    counts: dict[str, dict[str, int]] = {}
    slowest, examples = 0.0, {}
    for kind, name, data in mutations(files, rng, args.count):
        group = kind.split(" (")[0]
        c = counts.setdefault(group, {"tried": 0, "refused": 0, "decoded": 0, "crash": 0,
                                      "hang": 0})
        c["tried"] += 1
        signal.alarm(HANG_S)
        t0 = time.perf_counter()
        try:
            decoder.decode(data)
            outcome = "decoded"
        except NicodecError:
            outcome = "refused"
        except Hang:
            outcome = "hang"
        except Exception as e:  # noqa: BLE001 - a crash is what we count
            outcome = "crash"
            examples.setdefault(f"{kind}: {type(e).__name__}", str(e)[:200])
        finally:
            signal.alarm(0)
        slowest = max(slowest, time.perf_counter() - t0)
        c[outcome] += 1
        if outcome == "decoded" and group != "payload mutation":
            examples.setdefault(f"decoded {kind}", name)
    total = {k: sum(c[k] for c in counts.values()) for k in next(iter(counts.values()))}
    pm = counts["payload mutation"]
    result = {"seed": args.seed, "per_kind": args.count, "corpus": [n for n, _ in files],
              "counts": counts, "total": total, "slowest_s": round(slowest, 3),
              "payload_mutations_refused_pct": round(100 * pm["refused"] / pm["tried"], 2),
              "examples": examples}
    for kind, c in counts.items():
        print(f"{kind:22s} tried {c['tried']:5d}  refused {c['refused']:5d}  decoded "
              f"{c['decoded']:5d}  crashes {c['crash']}  hangs {c['hang']}")
    print(f"{'total':22s} tried {total['tried']:5d}  refused {total['refused']:5d}  decoded "
          f"{total['decoded']:5d}  crashes {total['crash']}  hangs {total['hang']}; slowest "
          f"input {slowest:.2f} s; payload mutations refused "
          f"{result['payload_mutations_refused_pct']} %")
    for k, v in examples.items():
        print(f"  {k}: {v}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    sys.exit(1 if total["crash"] or total["hang"] else 0)


if __name__ == "__main__":
    main()
