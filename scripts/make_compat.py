"""Write this release's compatibility corpus: tests/compat/<release>/ (never edit it later).

    .venv/bin/python scripts/make_compat.py v0.5

Files this release writes, each beside what it decodes to (``<name>.png``, or for large
images ``<name>.pixels.json`` with the sha256 of the decoded pixels): every quality of the
photo codec (the newest generation) and of the shipped adapters, a greyscale image,
effort-3 and effort-4 files, a ``--target-bpp`` file (and since 0.20 a ``--target-psnr``
file and a ``--target-bpp`` file of a large image), a tiled (format version 2) image,
files on other quantisation grids (format version 3, since 0.18: ``--step``, a tiled one
too, and since 0.21 a large image's default grid, and an adapter's with a context model; since 0.19 the shipped adapters' default
encodes pick their grids too), and a user
adapter made with this release (``user-<name>.safetensors``; q2, and q4 since 0.11; with
its own hyperprior since 0.14, and its own ``step_slope`` where adapt measured a positive
one since 0.19) with a file made with it at each of its qualities.
Every later release must decode them all to the same pixels (``tests/test_compat.py``).
It records in ``tests/compat/platforms.json`` the CPU family that decoded them
(:func:`nicodec.codec.float_platform`): on another family a float sum may flip a pixel.

    .venv/bin/python scripts/make_compat.py --platform-pixels

records, for this machine's CPU family, the sha256 of what every file of the releases it
did not write decodes to here, so that the tests check them exactly on this family too.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
NIC = [sys.executable, "-m", "nicodec.cli"]
SOURCE = ROOT / "tests" / "compat" / "v0.1" / "photo-q4.png"  # a natural 200x136 image
ASTRO = ROOT / "tests" / "compat" / "v0.1" / "astro-q4.png"
SCREEN = ROOT / "tests" / "compat" / "v0.1" / "screen-q4.png"


def nic(*args, env=None) -> None:
    r = subprocess.run(NIC + [str(a) for a in args], capture_output=True, text=True, env=env)
    if r.returncode:
        raise SystemExit(f"nicodec {' '.join(map(str, args))}: {r.stderr.strip()}")


def pixels_json(png: Path, nic_file: Path) -> None:
    """The decoded pixels of a large file as a hash (its PNG would weigh megabytes)."""
    with Image.open(png) as im:
        a = np.asarray(im)
        meta = {"mode": im.mode, "size": list(im.size),
                "sha256": hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()}
    nic_file.with_suffix(".pixels.json").write_text(json.dumps(meta, indent=1) + "\n")
    png.unlink()


PLATFORMS = ROOT / "tests" / "compat" / "platforms.json"


def read_platforms() -> dict:
    return json.loads(PLATFORMS.read_text())


def write_platforms(d: dict) -> None:
    PLATFORMS.write_text(json.dumps(d, indent=1, sort_keys=True) + "\n")


def platform_pixels() -> None:
    """Record this CPU family's decoded pixels of every file other families wrote."""
    from nicodec.codec import float_platform

    here, d = float_platform(), read_platforms()
    table = d.setdefault("pixels_sha256", {}).setdefault(here, {})
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, NICODEC_HOME=str(Path(tmp) / "home"))
        env.pop("NICODEC_MODELS", None)
        for adapter in sorted(PLATFORMS.parent.glob("*/user-*.safetensors")):
            nic("models", "import", adapter, env=env)
        for f in sorted(PLATFORMS.parent.glob("*/*.nic")):
            release = f.parent.name
            if d["written_on"][release] == here:
                continue
            png = Path(tmp) / "out.png"
            nic("decode", f, "-o", png, "--quiet", "--max-pixels", 100_000_000, env=env)
            with Image.open(png) as im:
                a = np.ascontiguousarray(np.asarray(im))
            table[f"{release}/{f.name}"] = hashlib.sha256(a.tobytes()).hexdigest()
    write_platforms(d)
    print(f"recorded {len(table)} files' pixels for {here} in {PLATFORMS}")


def main() -> None:
    if sys.argv[1] == "--platform-pixels":
        return platform_pixels()
    from nicodec.codec import float_platform

    release = sys.argv[1]
    out = ROOT / "tests" / "compat" / release
    if out.exists():
        raise SystemExit(f"{out} exists: a release's corpus is written once")
    out.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, NICODEC_HOME=str(Path(tmp) / "home"))
        # The decoder's float32 sums depend on the thread count; since 0.5 the codec pins
        # its transforms to codec.REFERENCE_THREADS (2, what 0.1-0.4 recorded with torch's
        # default on 2 cores), so the expected pixels are the same whatever runs this.
        for var in ("NICODEC_MODELS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env.pop(var, None)
        for q in (1, 2, 3, 4):
            for domain, src in (("photo", SOURCE), ("astro", ASTRO), ("screen", SCREEN)):
                f = out / f"{domain}-q{q}.nic"
                nic("encode", src, "-q", q, "--domain", domain, "-o", f, "--quiet", env=env)
        grey = Path(tmp) / "grey.png"
        Image.open(SOURCE).convert("L").save(grey)
        nic("encode", grey, "-q", 2, "-o", out / "grey-q2.nic", "--quiet", env=env)
        for level in (3, 4):  # effort 4 since 0.9
            nic("encode", SOURCE, "-q", 3, "--effort", level, "-o",
                out / f"photo-q3-effort{level}.nic", "--quiet", env=env)
        nic("encode", SOURCE, "--target-bpp", "0.3", "-o", out / "photo-target-0.3bpp.nic",
            "--quiet", env=env)
        # a tiled file (format version 2): a smooth 2304 x 1800 image (4.1 MP) at q1
        yy, xx = np.mgrid[0:1800, 0:2304] / 2304
        big = np.stack([np.sin(5 * xx + c) * np.cos(3 * yy - c) for c in range(3)], -1)
        big = ((big + 1) * 120).astype(np.uint8)
        Image.fromarray(big).save(Path(tmp) / "big.png")
        nic("encode", Path(tmp) / "big.png", "-q", 1, "-o", out / "tiled-q1.nic", "--quiet",
            "--step", 0, env=env)
        # format version 3 (since 0.18): latents on other grids (nicodec.quantstep)
        nic("encode", Path(tmp) / "big.png", "-q", 1, "-o", out / "tiled-q1-step4.nic",
            "--quiet", "--step", 4, env=env)
        # since 0.21 a large image's default grid is chosen on tiles seen with a halo
        # (quantstep.TileSample)
        nic("encode", Path(tmp) / "big.png", "-q", 2, "-o", out / "tiled-q2-auto.nic",
            "--quiet", env=env)
        # rate control (since 0.20: a --target-psnr file; a large image's landing, which
        # chooses on a sample of tiles)
        nic("encode", SOURCE, "--target-psnr", "30", "-o", out / "photo-target-30dB.nic",
            "--quiet", env=env)
        nic("encode", Path(tmp) / "big.png", "--target-bpp", "0.03", "-o",
            out / "tiled-target-0.03bpp.nic", "--quiet", env=env)
        for domain, q, e in (("photo", 2, 5), ("photo", 4, -3), ("screen", 2, 3)):
            nic("encode", SOURCE if domain == "photo" else SCREEN, "-q", q, "--domain",
                domain, "--step", e, "-o", out / f"{domain}-q{q}-step{e}.nic", "--quiet",
                env=env)
        # a user adapter made with this release, and a file made with it
        folder = Path(tmp) / "user"
        folder.mkdir()
        with Image.open(SCREEN) as im:
            for i in range(6):
                im.rotate(90 * (i % 4)).save(folder / f"u{i}.png")
        name = release.replace(".", "").replace("v", "u")
        # (q4 too since 0.11, whose generation 6 renewed only q4: one adapter on two bases)
        # (since 0.14 with its own hyperprior, as adapt makes one on a generation-7 base)
        nic("adapt", folder, "--name", name, "--qualities", "2,4", "--steps", 40, "--batch", 4,
            "--synthesis-steps", 10, "--hyperprior-steps", 2000,
            "-o", out / f"user-{name}.safetensors", env=env)
        nic("models", "import", out / f"user-{name}.safetensors", env=env)
        for q in (2, 4):
            nic("encode", SCREEN, "-q", q, "--domain", name, "-o",
                out / f"user-{name}-q{q}.nic", "--quiet", env=env)
        for f in sorted(out.glob("*.nic")):
            png = f.with_suffix(".png")
            nic("decode", f, "-o", png, "--quiet", env=env)
            if f.name.startswith("tiled-"):
                pixels_json(png, f)
    d = read_platforms()
    d["written_on"][release] = float_platform()
    write_platforms(d)
    print(f"wrote {len(list(out.iterdir()))} files to {out}, decoded on {float_platform()}")


if __name__ == "__main__":
    main()
