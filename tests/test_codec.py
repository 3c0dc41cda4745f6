import numpy as np
import pytest

from nicodec import container, image
from conftest import smooth_image


@pytest.fixture()
def codec(reg):
    return reg.codec(quality=3)


@pytest.mark.parametrize("h, w", [(1, 1), (17, 33), (53, 37), (64, 64)])
def test_round_trip_any_size(codec, h, w):
    img = smooth_image(h, w)
    data = codec.encode(img)
    header, payload = container.parse(data)
    assert (header.width, header.height) == (w, h)
    out = codec.decode(header, payload)
    assert out.shape == (h, w, 3) and out.dtype == np.uint8
    # the decoder reproduces exactly what the encoder's own reconstruction is
    assert np.array_equal(out, codec.reconstruct(codec.latents(img), h, w))


def test_decoded_latents_equal_encoder_latents_exactly(codec):
    img = smooth_image(40, 72, seed=5)
    q = codec.latents(img)
    _, payload = container.parse(codec.encode(img))
    assert np.array_equal(codec.coder.decode(payload, q.shape), q)


def test_white_noise_round_trips(codec):
    noise = np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    header, payload = container.parse(codec.encode(noise))
    q = codec.latents(noise)
    assert np.array_equal(codec.coder.decode(payload, q.shape), q)


def test_encoding_is_deterministic(codec):
    img = smooth_image(32, 48, seed=2)
    assert codec.encode(img) == codec.encode(img)


def test_greyscale_and_rgba_inputs(codec, tmp_path):
    from PIL import Image

    grey = smooth_image(30, 40, channels=1)[:, :, 0]
    Image.fromarray(grey, "L").save(tmp_path / "g.png")
    loaded = image.load(tmp_path / "g.png")
    assert loaded.channels == 1 and np.array_equal(loaded.rgb[:, :, 2], grey)
    header, payload = container.parse(codec.encode(loaded.rgb, loaded.channels))
    assert header.channels == 1
    assert image.to_pil(codec.decode(header, payload), header.channels).mode == "L"

    rgba = np.dstack([smooth_image(30, 40), np.full((30, 40), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    loaded = image.load(tmp_path / "a.png")
    assert loaded.dropped_alpha and loaded.channels == 3
    assert np.array_equal(loaded.rgb, rgba[:, :, :3])
