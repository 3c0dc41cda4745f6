"""The interface every adaptation method implements, and the method registry."""

from __future__ import annotations

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
        """Stored key -> (shape, dtype) of one quality: the state of :meth:`stored` (less
        CompressAI's derived buffers), spelled out from the architecture's constants, so
        that checking a package needs no training network (importing CompressAI costs
        seconds on every decode); ``tests/test_methods.py`` holds it to the real one."""
        raise NotImplementedError

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


def float32(shapes: dict[str, tuple]) -> dict[str, tuple]:
    """``key -> shape`` as ``key -> (shape, torch.float32)``: every stored weight's dtype."""
    import torch

    return {key: (shape, torch.float32) for key, shape in shapes.items()}


def density_shapes(channels: int, prefix: str = "entropy_bottleneck.") -> dict[str, tuple]:
    """The stored state of CompressAI's ``EntropyBottleneck(channels, filters=EB_FILTERS)``:
    the density's layers (:func:`~nicodec.inference.density_filter_shapes`), its quantiles
    and their target, and the likelihood's lower bound."""
    from nicodec.inference import density_filter_shapes

    return density_filter_shapes(channels, prefix) | {
        f"{prefix}quantiles": (channels, 1, 3), f"{prefix}target": (3,),
        f"{prefix}likelihood_lower_bound.bound": (1,)}


def gdn_shapes(prefix: str, channels: int) -> dict[str, tuple]:
    """The stored state of CompressAI's ``GDN(channels)`` (or its inverse): beta (C,),
    gamma (C, C) and the pedestals and lower bounds of their reparametrizations."""
    shapes = {f"{prefix}beta": (channels,), f"{prefix}gamma": (channels, channels)}
    for param in ("beta", "gamma"):
        shapes[f"{prefix}{param}_reparam.pedestal"] = (1,)
        shapes[f"{prefix}{param}_reparam.lower_bound.bound"] = (1,)
    return shapes


def affine_shapes(channels: int) -> dict[str, tuple]:
    """``a_affine.*`` and ``s_affine.*``: a per-channel scale and bias after every
    convolution of the analysis (``channels`` each) and the synthesis (3 for the last)."""
    from nicodec.inference import N_LAYERS

    shapes = {}
    for side in ("a", "s"):
        for i in range(N_LAYERS):
            c = 3 if side == "s" and i == N_LAYERS - 1 else channels
            shapes[f"{side}_affine.{i}.alpha"] = (c,)
            shapes[f"{side}_affine.{i}.beta"] = (c,)
    return shapes
