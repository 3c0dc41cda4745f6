"""Fine tuning the base codec itself (paper section 2.2): ``naive`` tunes every parameter,
``selective`` only GDN/IGDN, the entropy model and a new per-channel scale and bias after
every convolution (convolutions frozen). Either gives a complete new codec with its own ID,
which no longer decodes the base codec's files (catastrophic forgetting)."""

from __future__ import annotations

from nicodec.methods.base import Method, register


def _copy_of(base, affine: bool):
    from nicodec.network import FactorizedPrior

    state = {k: v for k, v in base.state_dict().items()
             if not k.startswith("entropy_bottleneck._")}
    net = FactorizedPrior(affine=affine)
    net.load_state_dict(state, strict=False)
    return net


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


@register
class Naive(Method):
    name = "naive"

    def build(self, base, k: int = 0, **_):
        return _copy_of(base, affine=False)
