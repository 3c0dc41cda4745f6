"""The data pipeline's decisions: duplicates, the split, the sources it may use."""

import json

import numpy as np
import pytest
from PIL import Image

from nicodec import data


def _photo(path, seed, size=(320, 240)):
    """A smooth random picture (a blurred noise field), saved to ``path``."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    im = Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return im


def test_dedupe_drops_a_rescaled_recompressed_copy_and_keeps_other_pictures(tmp_path):
    im = _photo(tmp_path / "a/original.png", 1)
    (tmp_path / "b").mkdir()
    im.resize((160, 120), Image.Resampling.LANCZOS).save(tmp_path / "b/copy.jpg", quality=70)
    _photo(tmp_path / "c/other.png", 2)
    files = ["a/original.png", "b/copy.jpg", "c/other.png"]
    assert data.dedupe(files, tmp_path) == ["a/original.png", "c/other.png"]
    assert data.dedupe(["b/copy.jpg", "c/other.png"], tmp_path,
                       keep=("a/original.png",)) == ["c/other.png"]


def test_a_grown_split_keeps_its_test_list_and_trains_on_the_new_pictures(tmp_path):
    for i, name in enumerate(["t1", "t2", "r1", "new1", "new2"]):
        _photo(tmp_path / f"p/{name}.png", 10 + i)
    (tmp_path / "q").mkdir()
    Image.open(tmp_path / "p/t1.png").resize((200, 150)).save(tmp_path / "q/t1-copy.jpg")
    split = {"test": ["p/t1.png", "p/t2.png"], "train": ["p/r1.png"]}
    found = ["p/new1.png", "p/new2.png", "p/r1.png", "p/t1.png", "p/t2.png", "q/t1-copy.jpg"]
    grown = data.extend_split(split, found, tmp_path)
    assert grown["test"] == split["test"]
    assert grown["train"] == ["p/new1.png", "p/new2.png", "p/r1.png"]  # not the test copy


FIRST_TEST_LIST = [
    ("lomiri-wallpapers-16.04/usr/share/backgrounds", "Wine_by_Jakkub_Mede.jpg"),
    ("lomiri-wallpapers-16.04/usr/share/backgrounds", "sunset_by_Aitzol_Berasategi.jpg"),
    ("mate-backgrounds/usr/share/backgrounds/mate/nature", "Garden.jpg"),
    ("mate-backgrounds/usr/share/backgrounds/mate/nature", "RainDrops.jpg"),
    ("mate-backgrounds/usr/share/backgrounds/mate/nature", "Storm.jpg"),
    ("mate-backgrounds/usr/share/backgrounds/mate/nature", "Wood.jpg"),
    ("palapeli-data/usr/share/palapeli/collection", "castle-maintenon.jpg"),
    ("palapeli-data/usr/share/palapeli/collection", "citrus-fruits.jpg"),
    ("plasma-workspace-wallpapers/usr/share/wallpapers/DarkestHour/contents/images",
     "2560x1440.jpg"),
    ("plasma-workspace-wallpapers/usr/share/wallpapers/Path/contents/images", "2560x1440.jpg"),
]


@pytest.mark.parametrize("domain", data.DOMAINS)
def test_no_split_draws_on_the_images_reserved_for_independent_evaluation(domain):
    split = json.loads((data.SPLITS_DIR / f"{domain}.json").read_text())
    sources = {f.split("/")[0] for f in split["train"] + split["test"]}
    assert not sources & set(data.RESERVED_PACKAGES)
    assert not set(data.DEBIAN_PACKAGES) & set(data.RESERVED_PACKAGES)
    assert not set(data.PACKAGE_PHOTOS) & set(data.RESERVED_PACKAGES)


def test_the_photo_split_holds_300_photographs_with_its_first_test_list():
    split = json.loads((data.SPLITS_DIR / "photo.json").read_text())
    assert len(split["train"]) + len(split["test"]) >= 300
    assert not set(split["train"]) & set(split["test"])
    # the test photos of 0.1-0.8, whose results every release compares
    assert split["test"] == [f"{d}/{n}" for d, n in FIRST_TEST_LIST]


def test_photo_candidates_are_the_listed_photographs_without_scratchs_drawings(tmp_path):
    bg = tmp_path / data.SCRATCH_BACKGROUNDS
    for rel in ("Nature/lake.jpg", "Indoors/room1.jpg", "Sports/basketball-court2.png",
                "Nature/woods.gif"):
        _photo(bg / rel, 3)
    folder, names = data.PACKAGE_PHOTOS["kphotoalbum"]
    _photo(tmp_path / "kphotoalbum" / folder / f"{names[0]}.jpg", 4)
    _photo(tmp_path / "kphotoalbum" / folder / "not-listed.jpg", 5)
    got = data.candidates("photo", tmp_path)
    assert got == sorted([f"{data.SCRATCH_BACKGROUNDS}/Nature/lake.jpg",
                          f"kphotoalbum/{folder}/{names[0]}.jpg"])
