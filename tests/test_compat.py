"""Every file any release wrote decodes to exactly the pixels it decoded to then, and every
user adapter made by an earlier release still imports, decodes and encodes.

``tests/compat/<release>/`` holds, per release, ``.nic`` files with the PNG each decoded to
and user adapters (``user-<name>.safetensors``). Files are added, never removed or changed.

The decoder computes in float32, so what a file decodes to is exact for one CPU family
(:func:`nicodec.codec.float_platform`); ``platforms.json`` says which family wrote each
release. On that family, and on any family ``platforms.json`` holds pixel hashes for, the
check is exact; on any other, every value must be within one level of the recorded one and
at most one in 10,000 may differ (measured across families: at most 5 in 100,000).
"""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from nicodec import container
from nicodec.cli import main
from nicodec.codec import float_platform

COMPAT = Path(__file__).parent / "compat"
FILES = sorted(COMPAT.glob("*/*.nic"))
ADAPTERS = sorted(COMPAT.glob("*/user-*.safetensors"))
PLATFORMS = json.loads((COMPAT / "platforms.json").read_text())
HERE = float_platform()
MAX_FLIPPED = 1e-4  # of a file's values, one level each, on a CPU family nothing recorded


def sha256(pixels: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()


def assert_decodes_as_recorded(nic: Path, got: np.ndarray, want: np.ndarray | None) -> None:
    """``got``, what ``nic`` decoded to here, against what its release recorded: ``want``
    (the PNG's pixels; None where only a hash of them was recorded)."""
    release, key = nic.parent.name, f"{nic.parent.name}/{nic.name}"
    if PLATFORMS["written_on"][release] == HERE:
        if want is None:
            assert sha256(got) == json.loads(nic.with_suffix(".pixels.json").read_text())[
                "sha256"]
        else:
            assert np.array_equal(got, want)
        return
    mine = PLATFORMS["pixels_sha256"].get(HERE, {}).get(key)
    if mine is not None:  # this family's own record: exact
        assert sha256(got) == mine, f"{key} decodes otherwise than recorded for {HERE}"
    if want is None:
        if mine is None:
            pytest.skip(f"{key}: only a hash of its pixels on {PLATFORMS['written_on'][release]}"
                        f" was recorded, none for {HERE} (scripts/make_compat.py "
                        "--platform-pixels records one)")
        return
    assert got.shape == want.shape
    diff = np.abs(got.astype(np.int16) - want.astype(np.int16))
    assert diff.max() <= 1 and (diff > 0).mean() <= MAX_FLIPPED, \
        f"{key}: {(diff > 0).sum()} values differ, by up to {diff.max()}"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """A nicodec home with every compat user adapter imported, once for the module (18
    imports take about a second; the tests only read it)."""
    home = tmp_path_factory.mktemp("compat") / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("NICODEC_MODELS", raising=False)
        mp.setenv("NICODEC_HOME", str(home))
        for adapter in ADAPTERS:
            r = run("models", "import", adapter)
            assert r.exit_code == 0, r.output
    return home


@pytest.fixture()
def home(imported, monkeypatch, tmp_path):
    """The shipped registry and that home; returns a fresh folder for the test's outputs."""
    monkeypatch.delenv("NICODEC_MODELS", raising=False)
    monkeypatch.setenv("NICODEC_HOME", str(imported))
    return tmp_path


def test_the_corpus_is_there():
    assert len(FILES) >= 14 and len(ADAPTERS) >= 1


def test_every_release_says_which_cpu_family_decoded_it():
    releases = {f.parent.name for f in FILES}
    assert releases <= set(PLATFORMS["written_on"])
    for family, table in PLATFORMS["pixels_sha256"].items():
        assert all(PLATFORMS["written_on"][key.split("/")[0]] != family for key in table)
        assert set(table) <= {f"{f.parent.name}/{f.name}" for f in FILES}


@pytest.mark.parametrize("nic", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_old_file_decodes_to_its_png(home, nic):
    """To the PNG beside it, or for large images to the pixels' sha256 in
    ``<name>.pixels.json`` (see the module's docstring for other CPU families)."""
    out = home / (nic.stem + ".png")
    r = run("decode", nic, "-o", out, "--max-pixels", 100_000_000)
    assert r.exit_code == 0, r.output
    recorded = nic.with_suffix(".pixels.json")
    with Image.open(out) as got:
        if recorded.exists():
            want = json.loads(recorded.read_text())
            assert [got.mode, list(got.size)] == [want["mode"], want["size"]]
            assert_decodes_as_recorded(nic, np.asarray(got), None)
            return
        with Image.open(nic.with_suffix(".png")) as want:
            assert got.mode == want.mode and got.size == want.size
            assert_decodes_as_recorded(nic, np.asarray(got), np.asarray(want))


@pytest.mark.parametrize("adapter", ADAPTERS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_an_old_user_adapter_encodes_on_its_own_base(home, adapter):
    name = adapter.stem.removeprefix("user-")
    old_file = next(adapter.parent.glob(f"user-{name}-q*.nic"))
    old_header, _ = container.parse(old_file.read_bytes())
    src = adapter.parent / f"user-{name}-q2.png"
    new_file = home / "new.nic"
    r = run("encode", src, "--domain", name, "-q", old_header.quality, "-o", new_file)
    assert r.exit_code == 0, r.output
    header, _ = container.parse(new_file.read_bytes())
    # the adapter extends the base it was made on, whatever generation is newest now
    assert (header.base_id, header.adapter_id) == (old_header.base_id, old_header.adapter_id)
    r = run("decode", new_file, "-o", home / "new.png")
    assert r.exit_code == 0, r.output


ON_OTHER_CORE_COUNTS = [f for f in FILES if f.stem in ("photo-q1", "screen-q3")]


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("nic", ON_OTHER_CORE_COUNTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_old_files_decode_alike_on_any_core_count(home, nic, threads):
    """The corpus was decoded on 2 threads; oneDNN sums some convolutions in another order
    on other thread counts (at 1 thread, 40 of its files came out a few pixels one level
    off before the codec pinned its transforms to ``codec.REFERENCE_THREADS``)."""
    import torch

    from nicodec import api

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = api.decompress(nic.read_bytes(), "cpu")
        assert torch.get_num_threads() == threads  # the caller's setting is restored
    finally:
        torch.set_num_threads(before)
    with Image.open(nic.with_suffix(".png")) as want:
        assert_decodes_as_recorded(nic, got, np.asarray(want))


@pytest.mark.parametrize("nic", [f for f in FILES if f.stem.startswith("grey-")],
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_python_api_gives_the_recorded_greyscale_pixels(home, nic):
    """``nicodec.decompress`` of a greyscale file: the pixels ``nicodec decode`` writes
    (until 0.4 it returned the decoded red channel, up to 6 levels off that luma)."""
    from nicodec import api

    with Image.open(nic.with_suffix(".png")) as want:
        assert_decodes_as_recorded(nic, api.decompress(nic.read_bytes(), "cpu"),
                                   np.asarray(want))
