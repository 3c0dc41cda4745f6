"""The training loop's synthesis-only stage (``nicodec train --synthesis-only``) and its
distortions (``nicodec train --distortion``) and options."""

import math

import numpy as np
import pytest
import torch

from nicodec import modelfile, registry
from nicodec.data import CropSampler
from nicodec.network import FactorizedPrior
from nicodec.errors import NicodecError
from nicodec.train import PSNR_FLOOR, TrainConfig, psnr_distortion, rd_loss, train

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


def _crops_with_errors(sigmas, seed=0):
    """(x_hat, x): crops whose errors have the given standard deviations (0..1 scale)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(len(sigmas), 3, 16, 16, generator=g)
    noise = torch.randn(x.shape, generator=g) * torch.tensor(sigmas).reshape(-1, 1, 1, 1)
    return (x + noise).requires_grad_(True), x


def test_psnr_distortion_is_the_mse_of_the_mean_psnr():
    x_hat, x = _crops_with_errors([0.002, 0.05, 0.1])
    per_crop = ((x_hat - x) ** 2).flatten(1).mean(1).detach()
    mean_psnr = (-10 * torch.log10(per_crop + PSNR_FLOOR)).mean()
    got = psnr_distortion(x_hat, x).item() + PSNR_FLOOR
    assert -10 * math.log10(got) == pytest.approx(mean_psnr.item(), abs=1e-4)
    same, same_x = _crops_with_errors([0.02, 0.02])  # crops coded alike: nearly plain MSE
    assert psnr_distortion(same, same_x).item() == pytest.approx(
        ((same - same_x) ** 2).mean().item(), rel=0.02)


def test_psnr_distortion_follows_the_gradient_of_the_mean_psnr():
    """A smooth crop coded well (small error) gets the gradient of -mean PSNR, not MSE's."""
    x_hat, x = _crops_with_errors([0.002, 0.05, 0.1])
    psnr_distortion(x_hat, x).backward()
    got = x_hat.grad.clone()
    x_hat.grad = None
    per_crop = ((x_hat - x) ** 2).flatten(1).mean(1)
    torch.log(per_crop + PSNR_FLOOR).mean().backward()
    want = x_hat.grad
    cos = torch.nn.functional.cosine_similarity(got.flatten(), want.flatten(), dim=0)
    assert cos.item() > 0.9999
    x_hat.grad = None
    ((x_hat - x) ** 2).mean().backward()  # plain MSE: the well-coded crop's gradient is far smaller
    share = lambda g: (g[0].norm() / g.norm()).item()
    assert share(got) > 10 * share(x_hat.grad)


def test_rd_loss_reports_plain_mse_whatever_the_distortion():
    x_hat, x = _crops_with_errors([0.002, 0.1])
    out = {"x_hat": x_hat, "likelihoods": torch.full((2, 4, 2, 2), 0.5)}
    j_mse, bpp, mse = rd_loss(out, x, 0.01, "mse")
    j_psnr, bpp2, mse2 = rd_loss(out, x, 0.01, "psnr")
    assert torch.equal(bpp, bpp2) and torch.equal(mse, mse2)
    assert j_psnr.item() < j_mse.item()  # the badly coded crop weighs less


def test_an_unknown_distortion_is_refused():
    net = FactorizedPrior()
    cfg = TrainConfig(lam=0.016, steps=1, batch=1, crop=64, fast=False, distortion="ssim")
    with pytest.raises(NicodecError, match="distortion"):
        train(net, CropSampler([smooth_image(64, 64)], crop=64), cfg, console_log=False)


def test_training_on_the_psnr_distortion_differs_from_mse():
    """The option reaches the loop: the same seed and steps end at other weights."""
    images = [smooth_image(64, 64, seed=s) for s in range(2)]
    weights = {}
    for distortion in ("mse", "psnr"):
        torch.manual_seed(0)
        net = FactorizedPrior()
        cfg = TrainConfig(lam=0.016, steps=3, batch=2, crop=64, lr=1e-3, fast=False,
                          distortion=distortion, ckpt_every=1000)
        train(net, CropSampler(images, crop=64), cfg, console_log=False)
        weights[distortion] = net.g_a[0].weight.detach().clone()
    assert torch.isfinite(weights["psnr"]).all()
    assert not torch.equal(weights["mse"], weights["psnr"])


def test_the_cli_offers_exactly_the_loops_distortions():
    """cli.py spells the choices out (importing train would load torch for every command)."""
    from nicodec.cli import adapt as adapt_cmd
    from nicodec.cli import train as train_cmd
    from nicodec.train import DISTORTIONS

    for command in (train_cmd, adapt_cmd):
        option = next(p for p in command.params if p.name == "distortion")
        assert tuple(option.type.choices) == DISTORTIONS


@pytest.fixture()
def train_cli(test_models, env, tmp_path, monkeypatch):
    """``invoke(*args)``: ``nicodec train`` on a tiny photo set of its own, exporting into a
    copy of the test models; returns (result, the run's checkpoint config)."""
    import json
    import shutil

    from click.testing import CliRunner
    from PIL import Image

    from nicodec.cli import main

    models = tmp_path / "models"  # a copy: the run exports a model into it
    shutil.copytree(test_models, models)
    monkeypatch.setenv("NICODEC_MODELS", str(models))
    monkeypatch.setenv("NICODEC_DATA", str(tmp_path / "data"))
    for part, n in (("train", 2), ("test", 1)):
        folder = tmp_path / "data" / "photo" / part
        folder.mkdir(parents=True)
        for i in range(n):
            Image.fromarray(smooth_image(48, 64, seed=i)).save(folder / f"{part}{i}.png")
    runs = tmp_path / "runs"

    def invoke(*args, generation=2):
        pick = ["--generation", str(generation)] if generation else []
        r = CliRunner().invoke(main, ["train", "-q", "1", "--steps", "2", "--batch", "2",
                                      "--ckpt-every", "2", *pick, "--runs", str(runs), *args])
        config = (json.loads((runs / f"photo-g{generation or 2}-q1.json").read_text())["config"]
                  if r.exit_code == 0 else None)
        return r, config
    return invoke


def test_train_takes_its_crop_size_from_the_command_line(train_cli):
    """``nicodec train --crop`` reaches the training loop (its checkpoint records it)."""
    r, config = train_cli("--crop", "32")
    assert r.exit_code == 0, r.output
    assert "batch 2 of 32x32" in r.output
    assert (config["crop"], config["batch"], config["steps"]) == (32, 2, 2)
    assert config["round_for_synthesis"] is False
    refused, _ = train_cli("--crop", "40", "--steps", "1")
    assert refused.exit_code == 2 and "40 is not a multiple of 16" in refused.output


def test_train_mixed_quantization_feeds_the_synthesis_rounded_latents(train_cli):
    """``nicodec train --mixed-quantization`` reaches the loop as ``round_for_synthesis``
    (what it computes: tests/test_network.py)."""
    r, config = train_cli("--crop", "32", "--mixed-quantization")
    assert r.exit_code == 0, r.output
    assert "the synthesis on rounded latents" in r.output
    assert config["round_for_synthesis"] is True and config["synthesis_only"] is False


# ----------------------------------------------------------------- joint training (gen. 8)
def _joint(seed=0):
    from nicodec.network import HyperPrior, JointCodec

    torch.manual_seed(seed)
    return JointCodec(FactorizedPrior(), HyperPrior())


def test_joint_training_pass_rates_the_symbols_the_hyperprior_codes():
    """In eval mode the joint pass's likelihoods are the hyperprior's of the test-time
    symbols round(y - median), and the synthesis gets exactly round(y - median) + median."""
    model = _joint().eval()
    x = torch.from_numpy(smooth_image(64, 64)).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        out = model(x)
        medians = model.entropy_bottleneck._get_medians().reshape(1, -1, 1, 1)
        q = torch.round(model.analysis(x) - medians)
        bits_y, bits_z = model.hyper(q)
        x_hat = model.synthesis(q + medians)
    assert torch.allclose(-torch.log2(out["likelihoods"]).sum(), bits_y + bits_z, rtol=1e-5)
    assert torch.equal(out["x_hat"], x_hat)


def test_joint_training_fits_the_factorized_tables_without_moving_the_transforms():
    """``fit_bits`` (the factorized prior's bits, kept fitted for the file's tables and for
    adapters) reaches the factorized prior's density only."""
    model = _joint().train()
    x = torch.from_numpy(smooth_image(64, 64)).permute(2, 0, 1)[None].float() / 255
    model(x)["fit_bits"].backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is None for n, g in grads.items() if not n.startswith("codec.entropy_bottleneck"))
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items()
               if n.startswith("codec.entropy_bottleneck.matrices"))


def test_a_joint_export_keeps_the_medians_its_hyperprior_was_trained_on():
    """Exporting a factorized model re-fits its quantiles; a joint one must not: the
    hyperprior predicts q = round(y - median) of the medians it trained with."""
    model = _joint()
    with torch.no_grad():
        model.codec.entropy_bottleneck.quantiles[:, 0, 1] += 0.37  # off the density's median
    medians = model.entropy_bottleneck._get_medians().flatten().clone()
    tensors = registry.model_tensors(model)
    _, tables = modelfile.split_tables(tensors)
    assert torch.allclose(tables["median"].flatten(), medians)
    assert modelfile.hyper_tensors(tensors)  # and the hyperprior is in the file


def test_train_hyperprior_exports_a_model_coded_with_its_hyperprior(train_cli, tmp_path):
    """``nicodec train --hyperprior`` trains transforms and hyperprior together and exports a
    ``factorized+hyperprior`` model (header coder 2) that round-trips; a later run from
    that file trains the same way without the flag."""
    from nicodec import api, container

    r, config = train_cli("--crop", "32", "--hyperprior", "--mixed-quantization")
    assert r.exit_code == 0, r.output
    assert "with its hyperprior" in r.output
    reg = registry.Registry()
    entry = reg.find_base(quality=1, generation=2)
    assert entry.arch == "factorized+hyperprior"
    codec = reg.codec(quality=1)
    assert codec.base_id == int(entry.id, 16) and type(codec.coder).__name__ == "HyperCoder"
    rgb = smooth_image(40, 56, seed=7)
    data = codec.encode(rgb)
    assert api.info(data)["coder"] == "constriction-rans-hyperprior"
    header, payload = container.parse(data)  # a fresh registry resolves the header's IDs
    decoded = registry.Registry().codec_for_header(header).decode(header, payload)
    assert np.array_equal(decoded, codec.reconstruct(codec.latents(rgb), 40, 56))

    import shutil

    shutil.rmtree(tmp_path / "runs")  # no checkpoint: only the --init file can say "joint"
    r2, _ = train_cli("--crop", "32", "--init", str(reg.dir / entry.file))
    assert r2.exit_code == 0, r2.output
    assert "with its hyperprior" in r2.output
    assert registry.Registry().find_base(quality=1, generation=2).arch == "factorized+hyperprior"


def test_a_joint_run_resumed_without_init_keeps_its_hyperpriors_activation(train_cli):
    """h_s's activation is no tensor: a run resumed from its checkpoint alone must take it
    from the checkpoint (here ReLU, as generation 7's q1/q2 have it), not the default."""
    from nicodec import hyperprior
    from nicodec.network import HyperPrior, JointCodec

    torch.manual_seed(0)
    relu = JointCodec(FactorizedPrior(), HyperPrior(leak_bits=0))
    reg = registry.Registry()
    start = registry.export_base(relu, domain="photo", quality=1, lam=0.002, steps=0,
                                 command="test", train_images=0, models_dir=reg.dir,
                                 generation=3)
    r, config = train_cli("--crop", "32", "--init", str(reg.dir / start.file))
    assert r.exit_code == 0, r.output
    assert config["extra"] == {"leak_bits": 0}
    r, config = train_cli("--crop", "32", "--steps", "4")  # resumes at step 2, no --init
    assert r.exit_code == 0, r.output
    assert "steps 2..4" in r.output and "with its hyperprior" in r.output
    entry = registry.Registry().find_base(quality=1, generation=2)
    tensors, _ = modelfile.load(reg.dir / entry.file)
    assert int(tensors["hyper.fixed_point"][hyperprior.LAYOUT_LEAK]) == 0


def test_train_refuses_an_init_file_that_is_no_model_file(train_cli, tmp_path):
    """A broken --init is one clear error, not a traceback, before anything trains."""
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"hello")
    r, _ = train_cli("--crop", "32", "--init", str(bad))
    assert r.exit_code == 1
    assert "error: bad.safetensors: not a valid safetensors file" in r.output
    assert "Traceback" not in r.output


def test_train_refuses_an_init_file_with_a_context_model(train_cli, tmp_path):
    """nicodec train does not train a context model: a generation-8 file is refused with
    what to start from instead, not trained without its context and exported as less."""
    import torch

    from nicodec import modelfile

    f = tmp_path / "ctx.safetensors"
    modelfile.save({"hyper.ctx.layout": torch.tensor([4, 64, 4095])}, f, {})
    r, _ = train_cli("--crop", "32", "--init", str(f))
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "codes with a context model" in r.output


def test_train_exports_a_new_generation_and_never_replaces_an_installed_model(train_cli):
    """Files name their model by ID: a run that exported over an installed model file would
    leave every file written with it undecodable. Without --generation a run exports after
    the newest installed generation; into an installed one, it stops before training."""
    reg = registry.Registry()
    shipped = reg.dir / "photo-q1.safetensors"  # generation 1's q1
    before = shipped.read_bytes()
    r, _ = train_cli("--crop", "32", generation=1)
    assert r.exit_code == 1
    assert r.output.startswith("error: ") and "holds model" in r.output
    assert "--generation 2" in r.output and r.output.count("\n") == 1
    assert shipped.read_bytes() == before
    assert not (reg.dir.parent / "runs").exists()  # nothing written

    assert registry.next_generation() == 2
    r, config = train_cli("--crop", "32", generation=None)
    assert r.exit_code == 0, r.output
    assert "exported photo-g2-q1.safetensors" in r.output
    assert registry.Registry().find_base(quality=1).generation == 2
    assert registry.next_generation() == 3
    assert shipped.read_bytes() == before
