"""Adaptation methods come from one registry; each builds, stores and loads consistently."""

import pytest
import torch

from nicodec import methods
from nicodec.container import NO_ADAPTER
from nicodec.errors import NicodecError
from nicodec.network import FactorizedPrior


def test_the_registry_lists_the_user_methods_and_refuses_unknown_ones():
    assert methods.names() == ["cawf", "selective", "naive"]
    with pytest.raises(NicodecError, match="unknown adaptation method"):
        methods.get("nope")


@pytest.mark.parametrize("name,k,options", [
    ("cawf", 4, {}), ("cawf", 16, {"channel_affine": True}), ("cawf", 33, {}),
    ("selective", 0, {}), ("naive", 0, {})])
def test_a_method_stores_what_it_expects_and_loads_it_bit_identically(name, k, options):
    """``expected_shapes`` is spelled out without the training network: it must be the
    stored module's state, key for key, shape for shape."""
    torch.manual_seed(0)
    base = FactorizedPrior().eval()
    m = methods.get(name)
    net = m.build(base, k, **options).eval()
    stored = {key: v for key, v in m.stored(net).state_dict().items()
              if "entropy_bottleneck._" not in key}
    expected = m.expected_shapes(k, **m.options_of(stored))
    assert {key: (tuple(v.shape), v.dtype) for key, v in stored.items()} == expected
    base_tensors = {key: v for key, v in base.state_dict().items() if v.numel()}
    frozen = m.frozen_net(base_tensors if m.extends_base else None, stored)
    x = torch.rand(1, 3, 32, 48)
    with torch.no_grad():
        assert torch.equal(frozen.analysis(x), net.analysis(x))
    assert frozen.latent_channels == m.latent_channels(k)
    ids = m.header_ids(7, 9)
    assert ids == ((7, 9) if m.extends_base else (9, NO_ADAPTER))


def test_only_cawf_trains_fewer_parameters_on_a_frozen_base():
    base = FactorizedPrior()
    cawf = methods.get("cawf").build(base, 4)
    assert not any(p.requires_grad for p in cawf.base.parameters())
    selective = methods.get("selective").build(base)
    trainable = sum(p.numel() for p in selective.parameters() if p.requires_grad)
    assert 0 < trainable < 0.1 * sum(p.numel() for p in selective.parameters())
