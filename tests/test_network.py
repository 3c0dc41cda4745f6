import pytest
import torch
import torch.nn.functional as F

from nicodec.network import AdaptedCodec, Adapter, FactorizedPrior, count_parameters


def test_base_parameter_count_matches_paper_table3():
    m = FactorizedPrior()
    assert count_parameters(m.g_a) == 324_736
    assert count_parameters(m.entropy_bottleneck) == 6_208
    assert count_parameters(m.g_s) == 324_675
    assert count_parameters(m) == 655_619


def test_cawf_parameter_count_matches_paper_table3():
    base = FactorizedPrior()
    adapter = Adapter(base, k=16)
    # The adapted codec is the paper's 80-filter network: it uses the base convs/GDNs and
    # the adapter, but the adapter's entropy model instead of the base one.
    in_use = count_parameters(base) - count_parameters(base.entropy_bottleneck) \
        + count_parameters(adapter)
    assert in_use == 1_019_203
    assert count_parameters(adapter.entropy_bottleneck) == 7_760


def test_selective_architecture_adds_about_five_percent():
    base, sel = FactorizedPrior(), FactorizedPrior(affine=True)
    extra = count_parameters(sel) - count_parameters(base)
    assert extra == 902  # alpha and beta for every conv output channel
    tunable = extra + sum(count_parameters(m) for m in sel.modules()
                          if m.__class__.__name__ == "GDN") \
        + count_parameters(sel.entropy_bottleneck)
    assert 0.04 < tunable / count_parameters(sel) < 0.06


def test_fresh_adapter_leaves_base_channels_and_output_unchanged():
    torch.manual_seed(0)
    base = FactorizedPrior().eval()
    wide = AdaptedCodec(base, Adapter(base, k=4)).eval()
    x = torch.rand(1, 3, 48, 80)
    with torch.no_grad():
        y_base, y_wide = base.analysis(x), wide.analysis(x)
        assert y_wide.shape == (1, 68, 3, 5)
        assert torch.allclose(y_wide[:, :64], y_base, atol=1e-6)
        y_hat = torch.round(y_wide)
        assert torch.allclose(wide.synthesis(y_hat), base.synthesis(y_hat[:, :64]), atol=1e-5)


def test_adapter_leaves_base_parameters_frozen():
    base = FactorizedPrior()
    before = {k: v.clone() for k, v in base.state_dict().items()}
    wide = AdaptedCodec(base, Adapter(base, k=2))
    out = wide(torch.rand(2, 3, 32, 32))
    (out["x_hat"].mean() + out["likelihoods"].mean()).backward()
    assert all(p.grad is None for p in base.parameters())
    assert any(p.grad is not None for p in wide.adapter.parameters())
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())


def test_round_for_synthesis_decodes_test_time_latents_with_a_straight_through_gradient():
    torch.manual_seed(0)
    net = FactorizedPrior().train()
    with torch.no_grad():  # medians away from 0, so rounding around them differs from round()
        net.entropy_bottleneck.quantiles[:, 0, 1] = 0.3
    x = torch.rand(2, 3, 32, 32)
    out = net(x, round_for_synthesis=True)
    with torch.no_grad():
        y = net.analysis(x)
        y_hat = torch.round(y - 0.3) + 0.3
        assert torch.allclose(out["x_hat"], net.synthesis(y_hat), atol=1e-5)
        assert not torch.allclose(out["x_hat"], net.synthesis(torch.round(y)), atol=1e-3)
    # the rate still comes from the noise proxy, and the distortion reaches the analysis
    assert out["likelihoods"].shape == y.shape
    ((out["x_hat"] - x) ** 2).mean().backward()
    assert net.g_a[0].weight.grad is not None and net.g_a[0].weight.grad.abs().sum() > 0


def test_channel_affine_adapter_starts_as_the_plain_adapter_and_trains_its_scales():
    base = FactorizedPrior()
    torch.manual_seed(1)
    plain = Adapter(base, k=4)
    torch.manual_seed(1)
    affine = Adapter(base, k=4, channel_affine=True)
    # the optional parameters draw no random numbers: everything else starts the same
    assert all(torch.equal(v, affine.state_dict()[k]) for k, v in plain.state_dict().items())
    extra = set(affine.state_dict()) - set(plain.state_dict())
    assert extra and all(k.startswith(("a_affine.", "s_affine.")) for k in extra)
    assert count_parameters(Adapter(base, 16, channel_affine=True)) \
        - count_parameters(Adapter(base, 16)) == 1_126
    x = torch.rand(1, 3, 32, 48)
    a, b = AdaptedCodec(base, plain).eval(), AdaptedCodec(base, affine).eval()
    with torch.no_grad():
        assert torch.equal(a.analysis(x), b.analysis(x))
        affine.s_affine[3].beta += 0.25  # the output layer's bias, on every pixel
        y = torch.round(a.analysis(x))
        assert torch.allclose(b.synthesis(y) - a.synthesis(y), torch.full_like(x, 0.25),
                              atol=1e-5)
    out = AdaptedCodec(base, affine).train()(x)
    out["x_hat"].mean().backward()
    assert affine.a_affine[0].alpha.grad is not None
    assert all(p.grad is None for p in base.parameters())


@pytest.mark.parametrize("cin, cout, h, w", [(64, 64, 16, 16), (80, 80, 5, 7), (64, 3, 16, 9)])
def test_the_fast_paths_transposed_convolution_is_the_same_function(cin, cout, h, w):
    """Per-phase and sub-pixel convolutions compute F.conv_transpose2d (stride 2, 5x5,
    output padding 1), values and gradients, to float rounding; outside a training pass
    under autocast upconv is conv_transpose2d itself, bit for bit."""
    from nicodec.network import _upconv_phases, _upconv_subpixel, upconv

    torch.manual_seed(0)
    x = torch.randn(2, cin, h, w, requires_grad=True)
    weight = (0.05 * torch.randn(cin, cout, 5, 5)).requires_grad_()
    bias = torch.randn(cout, requires_grad=True)
    ref = F.conv_transpose2d(x, weight, bias, 2, 2, 1)
    assert ref.shape == (2, cout, 2 * h, 2 * w)
    ref_grads = torch.autograd.grad((ref * ref).sum(), (x, weight, bias))
    for fn in (_upconv_phases, _upconv_subpixel):
        out = fn(x, weight, bias)
        assert torch.allclose(out, ref, atol=1e-5), fn.__name__
        for g, g_ref in zip(torch.autograd.grad((out * out).sum(), (x, weight, bias)),
                            ref_grads):
            assert torch.allclose(g, g_ref, rtol=1e-4, atol=1e-3), fn.__name__
    for training in (False, True):  # no autocast: the builtin, exactly
        assert torch.equal(upconv(x, weight, bias, training), ref)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast = upconv(x, weight, bias, True)
        plain = F.conv_transpose2d(x, weight, bias, 2, 2, 1)
    scale = float(plain.detach().abs().max())
    assert torch.allclose(fast.float(), plain.float(), atol=0.05 * scale)


@pytest.mark.parametrize("channel_affine", [False, True])
def test_a_grown_adapter_computes_what_the_narrower_one_computed(channel_affine):
    """grow_from: a trained-looking K=2 adapter (every tensor random, couplings included)
    loaded into K=5 gives the same analysis on the old channels and the same synthesis
    whatever the new latent channels hold; the new filters are live (they get gradients)."""
    torch.manual_seed(0)
    base = FactorizedPrior(n=8)
    old = Adapter(base, k=2, channel_affine=channel_affine)
    with torch.no_grad():
        for p in old.parameters():
            p.add_(0.05 * torch.randn_like(p))
    torch.manual_seed(1)
    new = Adapter(base, k=5, channel_affine=channel_affine)
    new.grow_from(old.state_dict(), 2)
    a, b = AdaptedCodec(base, old).eval(), AdaptedCodec(base, new).eval()
    x = torch.rand(1, 3, 64, 48)
    with torch.no_grad():
        y_old, y_new = a.analysis(x), b.analysis(x)
        assert y_new.shape[1] == 8 + 5
        assert torch.allclose(y_new[:, :10], y_old, atol=1e-5)
        y = torch.round(y_new)
        y[:, 10:] = torch.randn_like(y[:, 10:]) * 4  # whatever the new channels carry
        assert torch.allclose(b.synthesis(y), a.synthesis(y[:, :10]), atol=1e-5)
    b.train()
    out = b(x)
    loss = out["x_hat"].square().mean() + out["likelihoods"].log().mean()
    loss.backward()
    from nicodec.inference import BlockKeys as B

    assert new.p[B.custom_filters(1)].grad[2:].abs().sum() > 0
    assert new.p[B.synthesis_from_custom(1)].grad[2:].abs().sum() > 0


def test_grow_from_refuses_what_does_not_fit():
    base = FactorizedPrior(n=8)
    small, big = Adapter(base, k=4), Adapter(base, k=2)
    with pytest.raises(ValueError, match="not fewer"):
        big.grow_from(small.state_dict(), 4)
    with pytest.raises(ValueError, match="does not fit"):
        Adapter(base, k=5).grow_from(Adapter(FactorizedPrior(n=4), k=2).state_dict(), 2)
