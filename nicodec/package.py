"""Adaptation packages: the files ``nicodec adapt`` writes and ``models import`` accepts.

One safetensors file per adaptation NAME, holding one entry per quality:

* ``method = cawf``: the CAwF adapter's custom parameters only (``q<Q>.p.*``,
  ``q<Q>.entropy_bottleneck.*``, and unless trained with ``--no-channel-affine`` also
  ``q<Q>.a_affine.*`` / ``q<Q>.s_affine.*``) plus its frozen tables (``q<Q>.tables.*``). Its
  ID is the content hash of those tensors; it names the base model it extends (``base_id``).
* ``method = selective | naive``: a complete new codec (``q<Q>.g_a.*`` ...), whose ID is its
  own content hash; it replaces the base codec and cannot decode the base's bitstreams.

The metadata (safetensors' string map) carries ``nicodec=package``, the name, method, K,
date and a JSON ``qualities`` map: quality -> {id, base_id, lambda, steps, lr, train_images}.
:func:`validate` checks every key, shape, dtype, table and hash against what the method
implies before anything is used. Safetensors holds tensors only: nothing is unpickled.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from pathlib import Path

from typing import TYPE_CHECKING

from nicodec import modelfile
from nicodec.container import format_id
from nicodec.errors import NicodecError
from nicodec.modelfile import TABLE_PREFIX

if TYPE_CHECKING:  # reading metadata needs no torch; validation imports it
    import torch

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
RESERVED_NAMES = {"photo", "auto", "base"}
FORMAT = "1"


def check_name(name: str) -> str:
    if not NAME_RE.match(name or "") or name in RESERVED_NAMES:
        raise NicodecError(f"invalid adaptation name {name!r}: use 1-32 lowercase letters, "
                           "digits, '-' or '_' (not photo, auto or base)")
    return name


def quality_tensors(tensors: dict, quality: int) -> dict[str, torch.Tensor]:
    prefix = f"q{quality}."
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def save(path: Path, *, name: str, method: str, k: int,
         entries: dict[int, tuple[dict, dict]]) -> dict:
    """Write a package. ``entries``: quality -> (tensors, info); info gets its ``id``."""
    tensors, qualities = {}, {}
    for quality, (qt, info) in sorted(entries.items()):
        info = dict(info, id=format_id(modelfile.content_id(qt)))
        qualities[str(quality)] = info
        tensors |= {f"q{quality}.{key}": v.contiguous() for key, v in qt.items()}
    meta = {"nicodec": "package", "format": FORMAT, "name": name, "method": method,
            "k": str(k), "date": _dt.date.today().isoformat(),
            "qualities": json.dumps(qualities, sort_keys=True)}
    path.parent.mkdir(parents=True, exist_ok=True)
    modelfile.save(tensors, path, meta)
    return read_meta(path)


def read_meta(path: Path) -> dict:
    """The package's metadata (cheap: reads the header only), with ``qualities`` parsed."""
    try:
        meta = modelfile.read_metadata(path)
    except NicodecError:
        raise NicodecError(f"{path.name}: not a nicodec adaptation file (not a valid "
                           "safetensors file)") from None
    if meta.get("nicodec") != "package":
        raise NicodecError(f"{path.name}: not a nicodec adaptation file (no package metadata)")
    if meta.get("format") != FORMAT:
        raise NicodecError(f"{path.name}: package format {meta.get('format')!r} is not "
                           f"supported (expected {FORMAT})")
    try:
        meta["qualities"] = {int(q): v for q, v in json.loads(meta["qualities"]).items()}
        meta["k"] = int(meta["k"])
    except (KeyError, ValueError, TypeError) as e:
        raise NicodecError(f"{path.name}: malformed package metadata ({e})") from None
    meta["path"] = path
    return meta


def validate(path: Path, installed_bases: set[str],
             sha256: str | None = None) -> tuple[dict, dict]:
    """Load and fully check a package (and its file hash, if given); returns (meta, tensors).
    Raises NicodecError."""
    import torch

    meta = read_meta(path)
    where = f"{path.name}"
    check_name(meta.get("name", ""))
    from nicodec import methods

    name, k = meta.get("method"), meta["k"]
    if name not in methods.names():
        raise NicodecError(f"{where}: unknown method {name!r}")
    method = methods.get(name)
    try:
        method.check_k(k)
    except NicodecError as e:
        raise NicodecError(f"{where}: {e}") from None
    if not meta["qualities"] or not set(meta["qualities"]) <= {1, 2, 3, 4}:
        raise NicodecError(f"{where}: qualities must be a non-empty subset of 1..4")
    tensors, _ = modelfile.load(path, sha256)
    channels = method.latent_channels(k)
    seen = set()
    for quality, info in meta["qualities"].items():
        qt = quality_tensors(tensors, quality)
        seen |= {f"q{quality}.{key}" for key in qt}
        weights = {key: v for key, v in qt.items() if not key.startswith(TABLE_PREFIX)}
        shapes = method.expected_shapes(k, **method.options_of(weights))
        if set(weights) != set(shapes):
            extra, missing = set(weights) - set(shapes), set(shapes) - set(weights)
            raise NicodecError(f"{where}: quality {quality} tensors do not match a {name} "
                               f"package (unexpected {sorted(extra)[:3]}, missing "
                               f"{sorted(missing)[:3]})")
        for key, v in weights.items():
            if (tuple(v.shape), v.dtype) != shapes[key]:
                raise NicodecError(f"{where}: tensor {key} has shape {tuple(v.shape)} "
                                   f"{v.dtype}, expected {shapes[key][0]} {shapes[key][1]}")
            if not torch.isfinite(v).all():
                raise NicodecError(f"{where}: tensor {key} holds non-finite values")
        _check_tables(where, qt, channels)
        if format_id(modelfile.content_id(qt)) != info.get("id"):
            raise NicodecError(f"{where}: quality {quality} content hash does not match its "
                               "ID (corrupt or modified file)")
        if method.extends_base and info.get("base_id") not in installed_bases:
            raise NicodecError(f"{where}: needs base model {info.get('base_id')}, which is "
                               "not installed")
    if set(tensors) != seen:
        raise NicodecError(f"{where}: unexpected tensors {sorted(set(tensors) - seen)[:3]}")
    return meta, tensors


def _check_tables(where: str, qt: dict, channels: int) -> None:
    import torch

    from nicodec.entropy import TOTAL

    try:
        median, offset = qt[TABLE_PREFIX + "median"], qt[TABLE_PREFIX + "offset"]
        length, freq = qt[TABLE_PREFIX + "length"], qt[TABLE_PREFIX + "freq"]
    except KeyError as e:
        raise NicodecError(f"{where}: missing entropy table {e}") from None
    ok = (median.shape == (channels,) and median.dtype == torch.float32
          and offset.shape == (channels,) and offset.dtype == torch.int32
          and length.shape == (channels,) and length.dtype == torch.int32
          and freq.dim() == 2 and freq.shape[0] == channels and freq.dtype == torch.int32
          and bool((length >= 1).all()) and int(length.max()) < freq.shape[1] <= 1 << 16
          and bool((freq >= 0).all()) and bool(torch.isfinite(median).all()))
    if ok:
        for c in range(channels):
            row = freq[c, : int(length[c]) + 1]
            if int(row.sum()) != TOTAL or int(row.min()) < 1:
                ok = False
                break
    if not ok:
        raise NicodecError(f"{where}: malformed entropy tables")
