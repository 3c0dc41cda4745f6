"""The plain-torch inference networks compute exactly what the training networks compute."""

import pytest
import torch

from nicodec.inference import FrozenNet
from nicodec.network import AdaptedCodec, Adapter, FactorizedPrior


def _perturbed(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Move every parameter off its initial value, so no block is trivially zero."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return module


def _tensors(module: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items() if v.numel()}


def _assert_same_function(net: torch.nn.Module, frozen: FrozenNet) -> None:
    """Analysis and synthesis agree bit for bit on a random image and its rounded latent."""
    x = torch.rand(1, 3, 48, 64)
    with torch.no_grad():
        y = net.analysis(x)
        assert torch.equal(frozen.analysis(x), y)
        assert torch.equal(frozen.synthesis(torch.round(y)), net.synthesis(torch.round(y)))


@pytest.mark.parametrize("affine", [False, True], ids=["base", "selective"])
def test_base_and_selective_networks_are_bit_identical(affine):
    torch.manual_seed(0)
    net = _perturbed(FactorizedPrior(affine=affine), 1).eval()
    frozen = FrozenNet.from_tensors(_tensors(net))
    _assert_same_function(net, frozen)
    assert frozen.latent_channels == 64


@pytest.mark.parametrize("channel_affine", [False, True])
def test_cawf_network_is_bit_identical(channel_affine):
    torch.manual_seed(0)
    base = _perturbed(FactorizedPrior(), 2).eval()
    adapter = _perturbed(Adapter(base, 4, channel_affine=channel_affine), 3)
    net = AdaptedCodec(base, adapter).eval()
    frozen = FrozenNet.adapted(_tensors(base), _tensors(adapter))
    _assert_same_function(net, frozen)
    assert frozen.latent_channels == 68
