"""CAwF, Codec Adaptation without Forgetting (paper section 3.2): K custom filters per layer
and their own entropy model on top of the frozen base; optionally a per-channel scale and
bias after every widened convolution (``channel_affine``, nicodec's default)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nicodec.errors import NicodecError
from nicodec.methods.base import (BASE_CHANNELS, Method, affine_shapes, density_shapes,
                                  float32, register)

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

    def expected_shapes(self, k: int, channel_affine: bool = False, **_) -> dict[str, tuple]:
        """:class:`nicodec.network.Adapter`'s blocks (``BlockKeys``, under ``p.``), the
        entropy model of all N + K latent channels and, optionally, the channel affines."""
        from nicodec.inference import KERNEL, N_LAYERS
        from nicodec.inference import BlockKeys as B

        n, kk, last = BASE_CHANNELS, KERNEL, N_LAYERS - 1
        blocks = {}
        for i in range(N_LAYERS):
            blocks[B.custom_filters(i)] = (k, 3 if i == 0 else n + k, kk, kk)
            blocks[B.custom_bias(i)] = (k,)
            if i > 0:
                blocks[B.base_from_custom(i)] = (n, k, kk, kk)
            blocks[B.synthesis_from_custom(i)] = (k, 3 if i == last else n + k, kk, kk)
            if i < last:
                blocks[B.synthesis_custom_from_base(i)] = (n, k, kk, kk)
                blocks[B.synthesis_custom_bias(i)] = (k,)
        for gdn in ("gdn", "igdn"):
            for i in range(N_LAYERS - 1):
                blocks[B.gdn_custom_beta(gdn, i)] = (k,)
                blocks[B.gdn_custom_gamma(gdn, i)] = (k, n + k)
                blocks[B.gdn_base_from_custom(gdn, i)] = (n, k)
        shapes = {B.PREFIX + key: shape for key, shape in blocks.items()}
        shapes |= density_shapes(n + k)
        return float32(shapes | (affine_shapes(n + k) if channel_affine else {}))

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
