"""Domains, their public sources, the train/test split and image crops for training.

Three domains, each built from packages anyone can fetch without installing them:

* ``photo`` (the source domain): general photographs from Debian wallpaper and game
  packages (the photographs of GCompris's activities are unpacked from its Qt resource
  archives), Scratch's stage backgrounds, KPhotoAlbum's demo album and the photographs
  among other packages' examples (:data:`PACKAGE_PHOTOS`), plus the test photos bundled
  with the PyPI packages sporco, scikit-image, scikit-learn, matplotlib, ultralytics and
  imgaug. Only photographs: renders, gradients, drawings and logos are left out by name,
  and a picture that ships in several packages is kept once (:func:`dedupe`). The
  packages in :data:`RESERVED_PACKAGES` are never a source (independent evaluation).
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
import struct
import subprocess
import sys
import zipfile
import zlib
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
    "lomiri-wallpapers-20.04",
    "gcompris-qt-data",
    "mate-backgrounds",
    "plasma-workspace-wallpapers",
    "palapeli-data",
    "stellarium-data",
    "gimp-help-en",
    # photographs in packages' examples, demos and media (0.9; see PACKAGE_PHOTOS)
    "scratch",
    "kphotoalbum",
    "forensics-samples-files",
    "libdlib19.1",
    "labelme-examples",
    "tdiary-theme",
    "eyes17",
    "libjs-jquery-backstretch",
    "python-kivy-examples",
    "golang-github-rwcarlsen-goexif-dev",
)
# Reserved for independent evaluation (scripts/independent_eval.sh): never a source here.
RESERVED_PACKAGES = ("opencv-doc", "libjxl-testdata", "kstars-data")
# (pip spec, the wheel members to unpack)
PYPI_PACKAGES = (
    ("sporco==0.2.2.post1", "/data/"),
    ("scikit-image==0.26.0", "/data/"),
    ("scikit-learn==1.9.1", "sklearn/datasets/images/"),
    ("matplotlib==3.11.2", "mpl-data/sample_data/"),
    ("ultralytics==8.4.190", "ultralytics/assets/"),
    ("imgaug==0.4.0", "imgaug/quokka.jpg"),
)

# The photographs among the KDE Plasma wallpapers (the others are vector artwork).
PLASMA_PHOTOS = (
    "BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow",
    "FallenLeaf", "Grey", "OneStandsOut", "Path", "summer_1am",
)
SPORCO_PHOTOS = ("kodim23", "monarch", "sail", "tulips", "barbara")
SKIMAGE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg",
                  "motorcycle_left.png")
SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")
MPL_PHOTOS = ("grace_hopper.jpg",)
# The one photograph among lomiri-wallpapers-20.04's four (the others are renders). Of the
# other wallpaper packages checked, ukui-wallpapers, sway-backgrounds, gnome-backgrounds,
# desktop-base and lomiri-wallpapers hold renders and logos only; visp-images-data holds
# greyscale video frames of a few lab scenes and tuxpaint-stamps-default cut-outs on
# transparency (checked for 0.5; neither adds whole photographs).
LOMIRI20_PHOTOS = ("Kleiber_by_Lukas_Baubkus.jpg",)
# Scratch's stage backgrounds (Media/Backgrounds/<theme>/) are photographs except these
# drawings (and the GIFs, all drawings).
SCRATCH_BACKGROUNDS = "scratch/usr/share/scratch/Media/Backgrounds"
SCRATCH_DRAWINGS = (
    "chalkboard", "party-room", "room1", "room2", "room3", "spotlight-stage",
    "woods-and-bench", "graffiti", "school2", "basketball-court1-a", "basketball-court1-b",
    "basketball-court2",
)
# The photographs among other packages' examples, demos and media, picked by eye from
# contact sheets of every JPEG/PNG they hold (0.9): {package: (directory, (file, ...))}.
# Left out: dlib's collages and video frames, screenshots, drawings, textures, faded page
# banners, and texlive-latex-extra-doc's 29 small gallery pictures (a 593 MB package).
PACKAGE_PHOTOS = {
    "kphotoalbum": ("usr/share/kphotoalbum/demo", (
        "anne_helene", "bar55", "bar55_2", "blackie", "cold_water", "donna", "donna_2",
        "grand_canyon_1", "grand_canyon_2", "grand_canyon_3", "jesper", "jesper_2",
        "new_wave_1", "new_wave_2", "pool", "pool_2", "qt-logo", "skagen", "skagen_2",
        "snow", "spiff", "spiff_2", "sunset", "wayne")),
    "forensics-samples-files": ("usr/share/forensics-samples/original-files", (
        "pic1/IMG-20191006-WA0002", "pic1/IMG_1054.JPG", "pic1/IMG_20200827_231612",
        "pic2/IMG_20191224_234846", "pic2/IMG_20200124_231153", "pic2/IMG_20200608_111614")),
    "libdlib19.1": ("usr/share/doc/libdlib19.1/examples", (
        "faces/2007_007763", "faces/2008_001009", "faces/2008_001322", "faces/2008_002079",
        "faces/2008_002470", "faces/2008_002506", "faces/2008_004176", "faces/2008_007676",
        "faces/2009_004587", "faces/Tom_Cruise_avp_2014_4", "mmod_cars_test_image",
        "mmod_cars_test_image2")),
    "labelme-examples": ("usr/share/doc/labelme-examples/examples", (
        "bbox_detection/data_dataset_voc/JPEGImages/2011_000003",
        "bbox_detection/data_dataset_voc/JPEGImages/2011_000006",
        "bbox_detection/data_dataset_voc/JPEGImages/2011_000025",
        "classification/data_annotated/0001", "classification/data_annotated/0002",
        "tutorial/apc2016_obj3", "video_annotation/data_annotated/00000100")),
    "tdiary-theme": ("usr/share/tdiary/theme", (
        "cafe-mint-julep-soda/cafe-mint-julep-soda-back", "cherry_blossom/body",
        "curtain/body", "digital_gadgets/body", "noto/body", "snest/h1back",
        "winter/background", "yukon/yukon_dayback")),
    "eyes17": ("usr/share/eyes17/helpFiles/en/pics", (
        "accessory", "driven-pendulum-photo", "induction-photo", "rod-pend-LB",
        "sr04-photo", "eyes17-nb")),
    "libjs-jquery-backstretch": ("usr/share/doc/libjs-jquery-backstretch/examples", (
        "coffee", "dome", "pot-holder", "sample1_1920", "sample2_1920")),
    "python-kivy-examples": ("usr/share/kivy-examples", (
        "canvas/kiwi", "demo/pictures/images/Wall", "demo/pictures/images/faust_github",
        "widgets/cityCC0.png")),
    "golang-github-rwcarlsen-goexif-dev": (
        "usr/share/gocode/src/github.com/rwcarlsen/goexif/exif", ("sample1",)),
    "gimp-help-en": ("usr/share/gimp/2.0/help/en/images", (
        "filters/examples/taj_orig", "tutorials/quickie-crop-example-source",
        "tutorials/quickie-flip-example-source", "tutorials/quickie-jpeg-example",
        "tutorials/quickie-remove-background-source",
        "tutorials/quickie-rotate-example-source",
        "tutorials/tone-mapping/apple-orchard-truck-from-camera",
        "tutorials/tone-mapping/power-lines")),
    "ultralytics": ("ultralytics/assets", ("bus", "zidane")),
    "imgaug": ("imgaug", ("quokka",)),
}
# GCompris activities whose pictures are photographs (the others are drawings).
GCOMPRIS_RCC = "gcompris-qt-data/usr/share/gcompris-qt/rcc"
GCOMPRIS_PHOTO_ACTIVITIES = ("erase", "explore_monuments", "explore_world_animals",
                             "explore_farm_animals", "explore_world_music", "clickgame")
GCOMPRIS_MIN_SIDE = 300  # smaller pictures there are icons
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
    for spec, inside in PYPI_PACKAGES:
        name = spec.split("==")[0].replace("-", "_")
        if not any(wheels.glob(f"{name}-*.whl")):
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps",
                            "--only-binary=:all:", "-q", "-d", str(wheels), spec], check=True)
        target = pkgs / name
        if not target.exists():
            whl = next(wheels.glob(f"{name}-*.whl"))
            with zipfile.ZipFile(whl) as z:
                members = [m for m in z.namelist()
                           if inside in m and Path(m).suffix in IMAGE_SUFFIXES]
                z.extractall(target, members)
    unpack_gcompris(pkgs)


def rcc_files(data: bytes):
    """Yield (path, bytes) of every file in a Qt resource archive (``.rcc``, versions 1-3).

    Layout: a header (magic ``qres``, version, offsets of the tree, data and names), a
    tree of 14-byte (v1) or 22-byte entries (name offset, flags; a directory: child count
    and first child; a file: locale and data offset), names as UTF-16BE, and data as
    length-prefixed blobs (flag 1: zlib with a 4-byte size prefix).
    """
    magic, version, tree, blobs, names = struct.unpack_from(">4sIIII", data)
    if magic != b"qres":
        raise ValueError("not a Qt resource archive")
    entry_size = 14 if version == 1 else 22

    def name(off: int) -> str:
        (n,) = struct.unpack_from(">H", data, names + off)
        return data[names + off + 6: names + off + 6 + 2 * n].decode("utf-16-be")

    stack = [(0, "")]
    while stack:
        index, prefix = stack.pop()
        off = tree + index * entry_size
        name_off, flags = struct.unpack_from(">IH", data, off)
        path = f"{prefix}/{name(name_off)}" if index else ""
        if flags & 2:  # directory
            count, first = struct.unpack_from(">II", data, off + 6)
            stack += [(c, path.lstrip("/")) for c in range(first, first + count)]
            continue
        (data_off,) = struct.unpack_from(">I", data, off + 10)
        (n,) = struct.unpack_from(">I", data, blobs + data_off)
        blob = data[blobs + data_off + 4: blobs + data_off + 4 + n]
        if flags & 1:
            blob = zlib.decompress(blob[4:])
        elif flags & 4:  # zstd: not used by the packaged archives
            continue
        yield path.lstrip("/"), blob


def unpack_gcompris(pkgs: Path) -> None:
    """Unpack the pictures of GCompris's photo activities from their resource archives into
    ``pkgs/gcompris-photos/<activity>/...`` (idempotent)."""
    target = pkgs / "gcompris-photos"
    if target.exists():
        return
    tmp = target.with_suffix(".partial")
    for activity in GCOMPRIS_PHOTO_ACTIVITIES:
        rcc = pkgs / GCOMPRIS_RCC / f"{activity}.rcc"
        for path, blob in rcc_files(rcc.read_bytes()):
            if Path(path).suffix.lower() in IMAGE_SUFFIXES:
                rel = path.split(f"activities/{activity}/", 1)[-1]
                dst = tmp / activity / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.write_bytes(blob)
    tmp.rename(target)


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
        out += [pkgs / f"scikit_learn/sklearn/datasets/images/{n}" for n in SKLEARN_PHOTOS]
        out += [pkgs / f"matplotlib/matplotlib/mpl-data/sample_data/{n}" for n in MPL_PHOTOS]
        out += [pkgs / f"lomiri-wallpapers-20.04/usr/share/backgrounds/{n}"
                for n in LOMIRI20_PHOTOS]
        for theme in sorted((pkgs / SCRATCH_BACKGROUNDS).glob("*")):
            out += [p for p in theme.glob("*.*") if p.suffix in (".jpg", ".png")
                    and p.stem not in SCRATCH_DRAWINGS]
        for package, (folder, names) in PACKAGE_PHOTOS.items():
            out += [pkgs / package / folder / (n if Path(n).suffix else n + ".jpg")
                    for n in names]
        for p in (pkgs / "gcompris-photos").rglob("*"):
            if p.suffix.lower() in IMAGE_SUFFIXES:
                with Image.open(p) as im:
                    if min(im.size) >= GCOMPRIS_MIN_SIDE:
                        out.append(p)
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


def _dhash(path: Path) -> int:
    """A 256-bit difference hash: which of horizontally adjacent cells of a 17x16 greyscale
    thumbnail is brighter. Survives rescaling and recompression."""
    with Image.open(path) as im:
        a = np.asarray(im.convert("L").resize((17, 16), Image.Resampling.BILINEAR), np.int16)
    return int("".join("1" if b else "0" for b in (a[:, 1:] > a[:, :-1]).ravel()), 2)


DUPLICATE_BITS = 24  # dHashes this close (of 256 bits) are the same picture


def dedupe(files: list[str], pkgs: Path, keep: tuple[str, ...] = ()) -> list[str]:
    """``files`` without pictures that repeat one in ``keep`` or an earlier file (the same
    photo ships in several packages, at several sizes)."""
    seen = [_dhash(pkgs / f) for f in keep]
    out = []
    for f in files:
        h = _dhash(pkgs / f)
        if all(bin(h ^ o).count("1") > DUPLICATE_BITS for o in seen):
            seen.append(h)
            out.append(f)
    return out


def extend_split(split: dict[str, list[str]], files: list[str],
                 pkgs: Path) -> dict[str, list[str]]:
    """A committed split plus the candidates it does not hold yet (new packages), which go
    to training unless they repeat a picture already in the split. The test list never
    changes, so results stay comparable."""
    known = set(split["train"]) | set(split["test"])
    new = dedupe([f for f in files if f not in known], pkgs,
                 keep=tuple(split["test"] + split["train"]))
    return {"test": split["test"], "train": sorted(split["train"] + new)}


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
        found = candidates(domain, pkgs)
        if split_file.exists():
            old = json.loads(split_file.read_text())
            split = extend_split(old, found, pkgs)
        else:
            old, split = None, make_split(dedupe(found, pkgs))
        if split != old:
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
    if not d.is_dir() or not list_images(d):
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
