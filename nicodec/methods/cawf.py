"""CAwF, Codec Adaptation without Forgetting (paper section 3.2): K custom filters per layer
and their own entropy model on top of the frozen base; optionally a per-channel scale and
bias after every widened convolution (``channel_affine``, nicodec's default)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nicodec.errors import NicodecError
from nicodec.methods.base import BASE_CHANNELS, Method, register

if TYPE_CHECKING:
    from nicodec.package import QualityRecord

MAX_K = 64


@register
class CAwF(Method):
    name = "cawf"
    extends_base = True
    uses_k = True
    grows = True
    options = ("channel_affine",)

    def build(self, base, k: int = 16, channel_affine: bool = False, **_):
        from nicodec.network import AdaptedCodec, Adapter

        return AdaptedCodec(base, Adapter(base, k, channel_affine=channel_affine))

    def stored(self, net):
        return net.adapter if hasattr(net, "adapter") else net

    def grow(self, net, weights: dict, k_old: int) -> None:
        self.stored(net).grow_from(weights, k_old)

    def options_of(self, weights: dict) -> dict:
        return {"channel_affine": any(key.startswith(("a_affine.", "s_affine."))
                                      for key in weights)}

    def latent_channels(self, k: int) -> int:
        return BASE_CHANNELS + k

    def check_k(self, k: int) -> None:
        if not 1 <= k <= MAX_K:
            raise NicodecError(f"custom filter count {k} out of range 1..{MAX_K}")

    def describe(self, k: int, info: "QualityRecord") -> str:
        return f"cawf K={k}" + (" +affine" if info.training.get("channel_affine") else "")

    def frozen_net(self, base, weights):
        from nicodec.inference import FrozenNet

        return FrozenNet.adapted(base, weights)

    def header_ids(self, base_id: int, own_id: int) -> tuple[int, int]:
        return base_id, own_id
