"""Fine tuning the base codec itself (paper section 2.2): ``naive`` tunes every parameter,
``selective`` only GDN/IGDN, the entropy model and a new per-channel scale and bias after
every convolution (convolutions frozen). Either gives a complete new codec with its own ID,
which no longer decodes the base codec's files (catastrophic forgetting)."""

from __future__ import annotations

from nicodec.methods.base import (BASE_CHANNELS, Method, affine_shapes, density_shapes,
                                  float32, gdn_shapes, register)


def _copy_of(base, affine: bool):
    from nicodec.network import FactorizedPrior

    state = {k: v for k, v in base.state_dict().items()
             if not k.startswith("entropy_bottleneck._")}
    net = FactorizedPrior(affine=affine)
    net.load_state_dict(state, strict=False)
    return net


def _codec_shapes(affine: bool) -> dict[str, tuple]:
    """A whole :class:`nicodec.network.FactorizedPrior`: g_a (convolutions 0, 2, 4, 6 and
    GDNs 1, 3, 5), g_s (transposed convolutions, weights (in, out, 5, 5), and IGDNs),
    the entropy model, and with ``affine`` the channel affines."""
    from nicodec.inference import KERNEL, N_LAYERS

    n, shapes = BASE_CHANNELS, {}
    for i in range(N_LAYERS):
        cin, cout = (3 if i == 0 else n), n
        shapes[f"g_a.{2 * i}.weight"] = (cout, cin, KERNEL, KERNEL)
        shapes[f"g_a.{2 * i}.bias"] = (cout,)
        sout = 3 if i == N_LAYERS - 1 else n
        shapes[f"g_s.{2 * i}.weight"] = (n, sout, KERNEL, KERNEL)
        shapes[f"g_s.{2 * i}.bias"] = (sout,)
        if i < N_LAYERS - 1:
            shapes |= gdn_shapes(f"g_a.{2 * i + 1}.", n) | gdn_shapes(f"g_s.{2 * i + 1}.", n)
    shapes |= density_shapes(n)
    return float32(shapes | (affine_shapes(n) if affine else {}))


@register
class Selective(Method):
    name = "selective"

    def build(self, base, k: int = 0, **_):
        import torch.nn as nn

        net = _copy_of(base, affine=True)
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                for p in m.parameters():
                    p.requires_grad_(False)
        return net

    def expected_shapes(self, k: int, **options) -> dict[str, tuple]:
        return _codec_shapes(affine=True)


@register
class Naive(Method):
    name = "naive"

    def build(self, base, k: int = 0, **_):
        return _copy_of(base, affine=False)

    def expected_shapes(self, k: int, **options) -> dict[str, tuple]:
        return _codec_shapes(affine=False)
