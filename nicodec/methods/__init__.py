"""Adaptation methods, one class each, found through a registry (as CompressAI registers
its models): ``get("cawf")``, ``names()``. A method says how to build the network to train
from a base model, which tensors its package stores (and their expected shapes, for
validation), how to load those tensors into an inference network, and which IDs go into a
file's header.

Adding a method is one new module here that defines a subclass decorated with
:func:`register`, imported below, plus a test. The on-disk keys are kept as they are.
"""

from __future__ import annotations

from nicodec.methods.base import Method, get, names, register  # noqa: F401
from nicodec.methods import cawf, finetune  # noqa: F401, E402  (registers them)
