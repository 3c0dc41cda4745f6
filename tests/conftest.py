"""Shared fixtures: a small model registry made from a seeded, untrained network.

Round trips do not need a good model, only a deterministic one, so most tests run against
this registry (fast, no downloads); tests/test_golden.py uses the shipped models.
"""


import numpy as np
import pytest
import torch

from nicodec import registry
from nicodec.network import FactorizedPrior


@pytest.fixture(scope="session")
def test_models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    for quality in (1, 3):  # generation 1: the one the paper study is pinned to
        untrained_base(d, quality=quality, lam=0.016, seed=quality,
                       command="tests/conftest.py")
    return d


def untrained_base(d, *, quality=1, lam=0.002, seed=1, generation=1, command="test"):
    """Export an untrained (seeded) factorized-prior photo model into the registry ``d``;
    returns its manifest entry."""
    torch.manual_seed(seed)
    return registry.export_base(FactorizedPrior(), domain="photo", quality=quality, lam=lam,
                                steps=0, command=command, train_images=0, models_dir=d,
                                generation=generation)


@pytest.fixture()
def env(test_models, tmp_path, monkeypatch):
    """Points nicodec at the test registry and an empty NICODEC_HOME."""
    monkeypatch.setenv("NICODEC_MODELS", str(test_models))
    monkeypatch.setenv("NICODEC_HOME", str(tmp_path / "home"))
    return tmp_path


@pytest.fixture()
def reg(env):
    return registry.Registry()


def smooth_image(h, w, seed=0, channels=3):
    """A deterministic, natural-ish test image (gradients + blobs), uint8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([np.sin(6 * xx + c) * np.cos(4 * yy - c) for c in range(channels)], -1)
    img = (img + 1) * 110 + rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def object_ints(t):
    """A tensor's values as Python integers (numpy object array): exact at any size."""
    return t.numpy().astype(object)


def int_conv3(x, w, b):
    """A 3x3 convolution (zero padding 1) by its definition, in Python integers: the
    reference the integer networks (h_s, the context model) are checked against.
    x (Cin, H, W), w (Cout, Cin, 3, 3), b (Cout,), all object arrays."""
    cin, h, wd = x.shape
    xp = np.zeros((cin, h + 2, wd + 2), dtype=object)
    xp[:, 1:-1, 1:-1] = x
    out = np.zeros((w.shape[0], h, wd), dtype=object)
    for di in range(3):
        for dj in range(3):
            out += np.tensordot(w[:, :, di, dj], xp[:, di:di + h, dj:dj + wd], axes=1)
    return out + b[:, None, None]
