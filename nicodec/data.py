"""Domains, their public sources, the train/test split and image crops for training.

Three domains, each built from packages anyone can fetch without installing them:

* ``photo`` (the source domain): general photographs from Debian wallpaper and game
  packages plus the colour test photos bundled with the PyPI packages sporco and
  scikit-image.
* ``astro``: true-RGB deep-sky images from Debian's ``stellarium-data``.
* ``screen``: GUI screenshots (dialogs, preferences, menus, toolbox) from Debian's
  ``gimp-help-en``.

``make data`` (``python -m nicodec.data``) downloads the packages into ``data/``
(``apt-get download`` + ``dpkg-deb -x``, ``pip download``), applies the committed split in
``nicodec/splits/<domain>.json`` (or creates it, deterministically, the first time) and writes
the prepared images to ``data/<domain>/{train,test}/*.png``. Test images are whole images,
never crops of training images.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from nicodec.errors import NicodecError

REPO_ROOT = Path(__file__).resolve().parent.parent
SPLITS_DIR = Path(__file__).resolve().parent / "splits"
MAX_SIDE = 768  # prepared images are downscaled so that their longer side is at most this
MIN_SIDE = 128  # smaller images are skipped (training uses 128x128 crops)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp"}

DEBIAN_PACKAGES = (
    "lomiri-wallpapers-16.04",
    "mate-backgrounds",
    "plasma-workspace-wallpapers",
    "palapeli-data",
    "stellarium-data",
    "gimp-help-en",
)
PYPI_PACKAGES = ("sporco==0.2.2.post1", "scikit-image==0.26.0")

# The photographs among the KDE Plasma wallpapers (the others are vector artwork).
PLASMA_PHOTOS = (
    "BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow",
    "FallenLeaf", "Grey", "OneStandsOut", "Path", "summer_1am",
)
SPORCO_PHOTOS = ("kodim23", "monarch", "sail", "tulips", "barbara")
SKIMAGE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg",
                  "motorcycle_left.png")
GIMP_SCREEN_DIRS = ("dialogs", "preferences", "menus", "toolbox")
DOMAINS = ("photo", "astro", "screen")


def data_dir() -> Path:
    """Where downloads and prepared images live (``$NICODEC_DATA`` or ``<repo>/data``)."""
    return Path(os.environ.get("NICODEC_DATA", REPO_ROOT / "data"))


# --------------------------------------------------------------------------- fetching
def fetch(root: Path) -> None:
    """Download and unpack every source package into ``root/pkgs`` (idempotent)."""
    debs, pkgs, wheels = root / "debs", root / "pkgs", root / "pypi"
    for d in (debs, pkgs, wheels):
        d.mkdir(parents=True, exist_ok=True)
    missing = [p for p in DEBIAN_PACKAGES if not any(debs.glob(f"{p}_*.deb"))]
    if missing:
        subprocess.run(["apt-get", "download", *missing], cwd=debs, check=True)
    for deb in sorted(debs.glob("*.deb")):
        target = pkgs / deb.name.split("_")[0]
        if not target.exists():
            tmp = target.with_suffix(".partial")
            subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], check=True)
            tmp.rename(target)
    for spec in PYPI_PACKAGES:
        name = spec.split("==")[0].replace("-", "_")
        if not any(wheels.glob(f"{name}-*.whl")):
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps",
                            "--only-binary=:all:", "-q", "-d", str(wheels), spec], check=True)
        target = pkgs / name
        if not target.exists():
            whl = next(wheels.glob(f"{name}-*.whl"))
            with zipfile.ZipFile(whl) as z:
                members = [m for m in z.namelist()
                           if "/data/" in m and Path(m).suffix in IMAGE_SUFFIXES]
                z.extractall(target, members)


# --------------------------------------------------------------------------- selection
def _flatness(img: Image.Image) -> float:
    """Fraction of horizontally adjacent pixel pairs that are exactly equal.

    Screenshots are dominated by flat UI areas (> 0.5); photographs almost never are.
    """
    a = np.asarray(img.convert("RGB"), dtype=np.int16)
    return float((a[:, 1:] == a[:, :-1]).all(axis=2).mean())


def candidates(domain: str, pkgs: Path) -> list[str]:
    """Source images of a domain, as paths relative to ``pkgs``, sorted."""
    out: list[Path] = []
    if domain == "photo":
        out += (pkgs / "lomiri-wallpapers-16.04/usr/share/backgrounds").glob("*.jpg")
        out += (pkgs / "mate-backgrounds/usr/share/backgrounds/mate/nature").glob("*.jpg")
        for name in PLASMA_PHOTOS:
            imgs = sorted((pkgs / f"plasma-workspace-wallpapers/usr/share/wallpapers/{name}"
                           "/contents/images").glob("*.*"), key=lambda p: p.stat().st_size)
            out += imgs[-1:]  # the largest rendition
        out += (pkgs / "palapeli-data/usr/share/palapeli/collection").glob("*.jpg")
        out += [pkgs / f"sporco/sporco/data/{n}.png" for n in SPORCO_PHOTOS]
        out += [pkgs / f"scikit_image/skimage/data/{n}" for n in SKIMAGE_PHOTOS]
    elif domain == "astro":
        for p in (pkgs / "stellarium-data/usr/share/stellarium/nebulae/default").glob("*.png"):
            with Image.open(p) as im:
                if im.mode == "RGB" and min(im.size) >= MIN_SIDE:
                    out.append(p)
    elif domain == "screen":
        base = pkgs / "gimp-help-en/usr/share/gimp/2.0/help/en/images"
        for sub in GIMP_SCREEN_DIRS:
            for p in (base / sub).rglob("*.png"):
                with Image.open(p) as im:
                    if min(im.size) >= MIN_SIDE and _flatness(im) >= 0.5:
                        out.append(p)
    else:
        raise NicodecError(f"unknown domain {domain!r} (known: {', '.join(DOMAINS)})")
    return sorted(str(p.relative_to(pkgs)) for p in out if p.exists())


def make_split(files: list[str]) -> dict[str, list[str]]:
    """Deterministic split: order by sha256 of the path, first ``n_test`` go to test."""
    ranked = sorted(files, key=lambda f: hashlib.sha256(f.encode()).hexdigest())
    n_test = min(30, max(10, round(0.2 * len(files))))
    return {"test": sorted(ranked[:n_test]), "train": sorted(ranked[n_test:])}


def prepared_name(rel: str) -> str:
    """A flat, unique PNG file name for a source path."""
    stem = Path(rel).stem.replace(" ", "_")
    return f"{stem}-{hashlib.sha256(rel.encode()).hexdigest()[:6]}.png"


def prepare_image(src: Path, dst: Path) -> None:
    """Convert to RGB, downscale so the longer side is <= MAX_SIDE, write PNG."""
    with Image.open(src) as im:
        im = im.convert("RGB")
        scale = MAX_SIDE / max(im.size)
        if scale < 1:
            im = im.resize((round(im.width * scale), round(im.height * scale)),
                           Image.Resampling.LANCZOS)
        im.save(dst)


def prepare(root: Path | None = None) -> dict[str, dict[str, int]]:
    """Fetch, split and prepare all domains; returns the image counts."""
    root = root or data_dir()
    fetch(root)
    pkgs = root / "pkgs"
    counts = {}
    SPLITS_DIR.mkdir(exist_ok=True)
    for domain in DOMAINS:
        split_file = SPLITS_DIR / f"{domain}.json"
        if split_file.exists():
            split = json.loads(split_file.read_text())
        else:
            split = make_split(candidates(domain, pkgs))
            split_file.write_text(json.dumps(split, indent=1) + "\n")
        counts[domain] = {}
        for part in ("train", "test"):
            out = root / domain / part
            out.mkdir(parents=True, exist_ok=True)
            for rel in split[part]:
                dst = out / prepared_name(rel)
                if not dst.exists():
                    prepare_image(pkgs / rel, dst)
            counts[domain][part] = len(split[part])
    return counts


def split_dir(domain: str, part: str) -> Path:
    d = data_dir() / domain / part
    if not d.is_dir() or not any(d.glob("*.png")):
        raise NicodecError(f"no prepared images in {d}: run 'make data' first")
    return d


# --------------------------------------------------------------------------- training crops
def list_images(folder: Path) -> list[Path]:
    """Every image file under ``folder``, recursively, sorted."""
    return sorted(p for p in Path(folder).rglob("*")
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


@dataclass
class CropSampler:
    """Random ``crop`` x ``crop`` RGB crops from images held in memory as uint8 arrays.

    Images smaller than the crop are padded by reflection.
    """

    images: list[np.ndarray]
    crop: int = 128
    seed: int = 0

    def __post_init__(self):
        self.rng = np.random.default_rng(self.seed)

    @classmethod
    def from_files(cls, files: list[Path], crop: int = 128, seed: int = 0) -> "CropSampler":
        imgs = []
        for f in files:
            with Image.open(f) as im:
                imgs.append(np.asarray(im.convert("RGB")))
        return cls(imgs, crop, seed)

    def batch(self, n: int) -> np.ndarray:
        """A float32 batch (n, 3, crop, crop) in [0, 1], with random horizontal flips."""
        out = np.empty((n, 3, self.crop, self.crop), np.float32)
        for i in range(n):
            a = self.images[self.rng.integers(len(self.images))]
            h, w = a.shape[:2]
            if h < self.crop or w < self.crop:
                a = np.pad(a, ((0, max(0, self.crop - h)), (0, max(0, self.crop - w)), (0, 0)),
                           mode="reflect")
                h, w = a.shape[:2]
            y = self.rng.integers(h - self.crop + 1)
            x = self.rng.integers(w - self.crop + 1)
            c = a[y:y + self.crop, x:x + self.crop]
            if self.rng.random() < 0.5:
                c = c[:, ::-1]
            out[i] = c.transpose(2, 0, 1) / 255.0
        return out


class MixedSampler:
    """Batches drawn in equal parts from several samplers (joint training on two domains,
    whatever their sizes)."""

    def __init__(self, samplers: list[CropSampler]):
        self.samplers = samplers

    def batch(self, n: int) -> np.ndarray:
        sizes = [n // len(self.samplers) + (i < n % len(self.samplers))
                 for i in range(len(self.samplers))]
        return np.concatenate([s.batch(m) for s, m in zip(self.samplers, sizes) if m])


def main() -> None:  # pragma: no cover - exercised by `make data`
    counts = prepare()
    print(f"data prepared under {data_dir()}")
    for domain, c in counts.items():
        print(f"  {domain:7s} train {c['train']:4d}  test {c['test']:4d}")


if __name__ == "__main__":
    main()
