"""The interface every adaptation method implements, and the method registry."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from nicodec.errors import NicodecError

if TYPE_CHECKING:
    import torch
    import torch.nn as nn

    from nicodec.inference import FrozenNet
    from nicodec.package import QualityRecord

BASE_CHANNELS = 64  # the base model's latent channels (N = M = 64)

_REGISTRY: dict[str, type["Method"]] = {}


def register(cls: type["Method"]) -> type["Method"]:
    """Class decorator: make ``cls`` available as ``get(cls.name)``."""
    _REGISTRY[cls.name] = cls
    return cls


def names(user_facing: bool = True) -> list[str]:
    """The methods' names, in registration order (``user_facing``: those ``adapt`` offers)."""
    return [n for n, c in _REGISTRY.items() if c.user_facing or not user_facing]


def get(name: str) -> "Method":
    try:
        return _REGISTRY[name]()
    except KeyError:
        raise NicodecError(f"unknown adaptation method {name!r} (known: "
                           f"{', '.join(_REGISTRY)})") from None


class Method:
    """One way of adapting a base codec to a domain.

    ``extends_base``: the package stores only new parameters on top of a base model that
    must be installed, and files name both (base ID, adapter ID); otherwise it stores a
    complete codec whose own ID goes into the header as the base ID.
    """

    name: str = ""
    extends_base: bool = False
    user_facing: bool = True
    uses_k: bool = False  # takes a number of custom filters K
    grows: bool = False  # a trained one can go on training with more custom filters
    options: tuple[str, ...] = ()  # the build options it accepts (adapt's flags)

    # -- training
    def build(self, base: "nn.Module", k: int = 0, **options) -> "nn.Module":
        """The network to train, initialised from ``base`` (not modified)."""
        raise NotImplementedError

    def stored(self, net: "nn.Module") -> "nn.Module":
        """The module whose state (without CompressAI's derived buffers) a package stores."""
        return net

    def grow(self, net: "nn.Module", weights: dict, k_old: int) -> None:
        """Load the stored ``weights`` of a ``k_old``-filter adaptation into ``net``, which
        has more custom filters, computing what they computed (``grows`` methods only)."""
        raise NicodecError(f"{self.name} adaptations keep their form")

    # -- packages
    def options_of(self, weights: dict) -> dict:
        """The build options a package's stored weights imply (e.g. an optional part)."""
        return {}

    def latent_channels(self, k: int) -> int:
        return BASE_CHANNELS

    def expected_shapes(self, k: int, **options) -> dict[str, tuple]:
        """Stored key -> (shape, dtype) of one quality (cached)."""
        return _shapes(self.name, k, tuple(sorted(options.items())))

    def check_k(self, k: int) -> None:
        if k != 0:
            raise NicodecError(f"{self.name} takes no custom filters (K = {k})")

    def describe(self, k: int, info: "QualityRecord") -> str:
        """The method as ``nicodec models`` lists it."""
        return self.name

    # -- inference
    def frozen_net(self, base: dict | None, weights: dict) -> "FrozenNet":
        """The inference network from the base model's tensors (None when not extending
        one) and one quality's stored weights."""
        from nicodec.inference import FrozenNet

        return FrozenNet.from_tensors(weights)

    def header_ids(self, base_id: int, own_id: int) -> tuple[int, int]:
        """(base ID, adapter ID) that files made with this method carry."""
        from nicodec.container import NO_ADAPTER

        return own_id, NO_ADAPTER


@functools.lru_cache(maxsize=None)
def _shapes(name: str, k: int, options: tuple) -> dict[str, tuple]:
    from nicodec.network import FactorizedPrior

    method = get(name)
    module = method.stored(method.build(FactorizedPrior(), k, **dict(options)))
    return {key: (tuple(v.shape), v.dtype) for key, v in module.state_dict().items()
            if "entropy_bottleneck._" not in key}
