"""The training loop's synthesis-only stage (``nicodec train --synthesis-only``)."""

import numpy as np
import torch

from nicodec import modelfile, registry
from nicodec.data import CropSampler
from nicodec.network import FactorizedPrior
from nicodec.train import TrainConfig, train

from conftest import smooth_image


def _rounded_mse(net: FactorizedPrior, x: torch.Tensor) -> float:
    """Distortion of what the decoder produces from test-time latents."""
    with torch.no_grad():
        medians = net.entropy_bottleneck._get_medians().reshape(1, -1, 1, 1)
        y = net.analysis(x)
        return float(((net.synthesis(torch.round(y - medians) + medians) - x) ** 2).mean())


def test_synthesis_only_tunes_the_decoder_and_leaves_every_rate_alone():
    torch.manual_seed(0)
    net = FactorizedPrior()
    images = [smooth_image(96, 96, seed=s) for s in range(3)]
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
    # (exporting fits the entropy model's quantiles, as a shipped model's already are)
    tables = modelfile.split_tables(registry.model_tensors(net))[1]
    frozen = {k: v.clone() for k, v in net.state_dict().items() if not k.startswith("g_s.")}
    decoder = {k: v.clone() for k, v in net.state_dict().items() if k.startswith("g_s.")}
    before = _rounded_mse(net, x)

    cfg = TrainConfig(lam=0.016, steps=30, batch=3, crop=64, lr=1e-3, fast=False,
                      synthesis_only=True, log_every=10, ckpt_every=1000)
    train(net, CropSampler(images, crop=64), cfg, console_log=False)

    state = net.state_dict()
    assert all(torch.equal(state[k], v) for k, v in frozen.items())  # g_a, entropy model
    assert any(not torch.equal(state[k], v) for k, v in decoder.items())
    after_tables = modelfile.split_tables(registry.model_tensors(net))[1]
    assert after_tables.keys() == tables.keys()
    assert all(torch.equal(after_tables[k], v) for k, v in tables.items())
    assert _rounded_mse(net, x) < 0.9 * before


def test_a_later_stage_of_a_model_adds_to_its_manifest_history(env, test_models):
    from nicodec.basetrain import BaseRun, _history

    own = test_models / "photo-q1.safetensors"  # generation 1's file name
    stage = BaseRun(domain="photo", quality=1, steps=300, generation=1, init=own,
                    synthesis_only=True)
    assert _history(stage, 300, "nicodec train -q 1 --synthesis-only") == (
        300, "tests/conftest.py && nicodec train -q 1 --synthesis-only")
    other = BaseRun(domain="photo", quality=1, steps=300, generation=1,
                    init=test_models / "photo-q3.safetensors")
    assert _history(other, 300, "cmd") == (300, "cmd")


def test_a_synthesis_stage_needs_a_trained_model(env):
    from click.testing import CliRunner

    from nicodec.cli import main

    r = CliRunner().invoke(main, ["train", "-q", "1", "--synthesis-only", "--steps", "1"])
    assert r.exit_code == 1
    assert r.output.strip() == "error: --synthesis-only tunes a trained model: give it --init"
