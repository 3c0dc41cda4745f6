"""The Python API and the Pillow plugin, as a user of the library meets them."""

import subprocess
import sys
import warnings

import numpy as np
import pytest
from PIL import Image

import nicodec
from conftest import smooth_image
from nicodec import container


def test_compress_decompress_round_trip_of_an_array(reg):
    rgb = smooth_image(40, 56)
    data = nicodec.compress(rgb, quality=3)
    header, _ = container.parse(data)
    assert (header.width, header.height, header.quality) == (56, 40, 3)
    out = nicodec.decompress(data)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    # the same pixels as the codec layer (the test models are untrained: no quality claim)
    assert np.array_equal(out, reg.codec(quality=3).decode(*container.parse(data)))
    info = nicodec.info(data)
    assert info["width"] == 56 and info["base_model"]["installed"]


def test_the_api_and_the_cli_write_the_same_bytes(env):
    from click.testing import CliRunner

    from nicodec.cli import main

    rgb = smooth_image(33, 47, seed=4)
    Image.fromarray(rgb).save(env / "x.png")
    assert CliRunner().invoke(main, ["encode", str(env / "x.png"), "-q", "1"]).exit_code == 0
    assert nicodec.Encoder(quality=1).compress(rgb) == (env / "x.nic").read_bytes()


def test_greyscale_and_pil_inputs(env):
    grey = smooth_image(32, 48)[:, :, 0]
    out = nicodec.decompress(nicodec.compress(grey, quality=1))
    assert out.shape == grey.shape
    pil = Image.fromarray(smooth_image(32, 48))
    assert nicodec.decompress(nicodec.compress(pil)).shape == (32, 48, 3)


def test_encoder_and_decoder_objects_keep_models_for_many_images(env):
    enc, dec = nicodec.Encoder(quality=1), nicodec.Decoder()
    for seed in range(3):
        rgb = smooth_image(24, 40, seed=seed)
        assert dec.decompress(enc.compress(rgb)).shape == rgb.shape


def test_bad_input_is_a_nicodec_error(env):
    with pytest.raises(nicodec.NicodecError):
        nicodec.compress(np.zeros((4, 4), np.float32))
    with pytest.raises(nicodec.NicodecError):
        nicodec.decompress(b"not a nic file")


def test_pillow_opens_and_saves_nic_files(env):
    rgb = smooth_image(36, 52)
    Image.fromarray(rgb).save(env / "a.nic", quality=1)
    with Image.open(env / "a.nic") as im:
        assert im.format == "NIC" and im.size == (52, 36) and im.mode == "RGB"
        assert im.info["quality"] == 1
        pixels = np.asarray(im)
    assert np.array_equal(pixels, nicodec.decompress((env / "a.nic").read_bytes()))
    Image.fromarray(rgb[:, :, 0]).save(env / "g.nic")
    with Image.open(env / "g.nic") as im:
        assert im.mode == "L" and np.asarray(im).shape == (36, 52)


def test_normal_use_prints_no_warning(env):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nicodec.decompress(nicodec.compress(smooth_image(20, 30)))


def test_import_nicodec_does_not_import_torch():
    code = "import sys, nicodec; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr
