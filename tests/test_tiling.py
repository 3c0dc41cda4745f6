"""Large images in tiles (format version 2): bounded memory, invisible seams, and every
version-1 file still decoded whole, pixel for pixel."""

import numpy as np
import pytest

from conftest import smooth_image
from nicodec import container, metrics, tiling


@pytest.fixture()
def small_tiles(monkeypatch):
    """Tiling from 2,000 pixels up, in tiles of 2 x 2 latents: a 48 x 80 image has 15."""
    monkeypatch.setattr(tiling, "TILED_ABOVE", 2000)
    monkeypatch.setattr(tiling, "TILE", 2)


def test_tiles_cover_the_grid_once_with_halos_inside_it():
    seen = np.zeros((9, 14), int)
    for (y0, y1, x0, x1), (ey0, ey1, ex0, ex1) in tiling.tiles(9, 14):
        seen[y0:y1, x0:x1] += 1
        assert 0 <= ey0 <= y0 < y1 <= ey1 <= 9 and 0 <= ex0 <= x0 < x1 <= ex1 <= 14
    assert (seen == 1).all()


def test_tiled_file_is_version_2_and_decodes_like_the_whole_image(reg, small_tiles):
    codec = reg.codec(quality=3)
    img = smooth_image(48, 80, seed=5)
    data = codec.encode(img)
    header, payload = container.parse(data)
    assert header.version == container.TILED_VERSION
    # the tiled analysis gives the whole-image latents
    tiling_off = tiling.TILED_ABOVE
    tiling.TILED_ABOVE = 10**9
    try:
        whole_q = codec.latents(img)
    finally:
        tiling.TILED_ABOVE = tiling_off
    assert np.array_equal(codec.coder.decode(payload, whole_q.shape), whole_q)
    tiled = codec.decode(header, payload)
    whole = codec.reconstruct(whole_q, 48, 80, tiled=False)
    assert tiled.shape == whole.shape == img.shape
    assert np.abs(tiled.astype(int) - whole).max() <= 1
    assert metrics.psnr(whole, tiled) > 60  # seams invisible: float order only


def test_version_1_files_decode_whole_whatever_their_size(reg, small_tiles):
    codec = reg.codec(quality=1)
    img = smooth_image(48, 80, seed=6)
    q = codec.latents(img)
    v1 = container.pack(container.Header(quality=1, channels=3, width=80, height=48,
                                         base_id=codec.base_id, coder=1,
                                         coder_version=container.parse(codec.encode(img))[0]
                                         .coder_version), codec.coder.encode(q))
    header, payload = container.parse(v1)
    assert header.version == 1
    assert np.array_equal(codec.decode(header, payload),
                          codec.reconstruct(q, 48, 80, tiled=False))


def test_small_images_keep_version_1(reg):
    data = reg.codec(quality=3).encode(smooth_image(40, 56))
    assert container.parse(data)[0].version == 1


def test_a_newer_version_asks_for_an_upgrade(reg):
    data = bytearray(reg.codec(quality=3).encode(smooth_image(40, 56)))
    data[4] = container.FORMAT_VERSION + 1
    with pytest.raises(Exception, match=f"format version {container.FORMAT_VERSION + 1}"):
        container.parse(bytes(data))
