"""Adaptation packages: the files ``nicodec adapt`` writes and ``models import`` accepts.

One safetensors file per adaptation NAME, holding one entry per quality:

* ``method = cawf``: the CAwF adapter's custom parameters only (``q<Q>.p.*``,
  ``q<Q>.entropy_bottleneck.*``, and unless trained with ``--no-channel-affine`` also
  ``q<Q>.a_affine.*`` / ``q<Q>.s_affine.*``) plus its frozen tables (``q<Q>.tables.*``). Its
  ID is the content hash of those tensors; it names the base model it extends (``base_id``).
* ``method = selective | naive``: a complete new codec (``q<Q>.g_a.*`` ...), whose ID is its
  own content hash; it replaces the base codec and cannot decode the base's bitstreams.
* any method, since 0.14: optionally a hyperprior that codes the quality's latents
  (``q<Q>.hyper.*``, :mod:`nicodec.hyperprior`; since 0.17 with a context model on it,
  ``q<Q>.hyper.ctx.*``, :mod:`nicodec.context`), part of the content hash; its files carry
  entropy coder 2 (3 with the context model).

The metadata (safetensors' string map) carries ``nicodec=package``, the name, method, K,
date and a JSON ``qualities`` map: quality -> {id, base_id, lambda, steps, lr, train_images}.
:func:`validate` checks every key, shape, dtype, table and hash against what the method
implies before anything is used. Safetensors holds tensors only: nothing is unpickled.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from typing import TYPE_CHECKING

from nicodec import modelfile
from nicodec.container import format_id
from nicodec.errors import NicodecError
from nicodec.modelfile import TABLE_PREFIX

if TYPE_CHECKING:  # reading metadata needs no torch; validation imports it
    import torch

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
ID_RE = re.compile(r"^[0-9a-f]{8}$")
RESERVED_NAMES = {"photo", "auto", "base"}
FORMAT = "1"
# What a package's numbers may be: trained weights are below ~200 in magnitude; anything
# near float32's range overflows the transforms into inf/NaN.
MAX_WEIGHT = 1e5


@dataclass(frozen=True)
class QualityRecord:
    """One quality of a package, as its metadata's ``qualities`` map records it."""

    id: str  # content ID of this quality's tensors: the adapter (CAwF) or the whole codec
    lam: float  # the rate-distortion trade-off it was trained for
    base_id: str | None  # the base model it extends (CAwF) or was fine-tuned from
    training: dict = field(default_factory=dict)  # steps, lr, train_images, ...: for people

    @classmethod
    def parse(cls, where: str, quality: int, raw) -> "QualityRecord":
        """Checked types: a JSON object with an 8-hex-digit ``id`` (and ``base_id``) and a
        positive finite ``lambda``."""
        bad = f"{where}: malformed package metadata (quality {quality}: "
        if not isinstance(raw, dict):
            raise NicodecError(bad + "not a JSON object)")
        mid, base, lam = raw.get("id"), raw.get("base_id"), raw.get("lambda")
        if not isinstance(mid, str) or not ID_RE.match(mid):
            raise NicodecError(bad + f"id {mid!r} is not 8 hex digits)")
        if base is not None and (not isinstance(base, str) or not ID_RE.match(base)):
            raise NicodecError(bad + f"base_id {base!r} is not 8 hex digits)")
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or \
                not (0 < lam < math.inf):
            raise NicodecError(bad + f"lambda {lam!r} is not a positive number)")
        slope = raw.get("step_slope")
        if slope is not None and (isinstance(slope, bool) or not isinstance(slope, (int, float))
                                  or not (0 < slope < math.inf)):
            raise NicodecError(bad + f"step_slope {slope!r} is not a positive number)")
        training = {k: v for k, v in raw.items() if k not in ("id", "base_id", "lambda")}
        return cls(id=mid, lam=float(lam), base_id=base, training=training)

    @property
    def step_slope(self) -> float | None:
        """The exchange rate (dB per bpp) at which the encoder picks each image's
        quantisation grid (:mod:`nicodec.quantstep`), measured by ``adapt`` on its training
        images since 0.19; None: the unit grid."""
        return self.training.get("step_slope")

    def to_json(self) -> dict:
        d = dict(self.training, id=self.id, **{"lambda": self.lam})
        return d if self.base_id is None else dict(d, base_id=self.base_id)


@dataclass(frozen=True)
class PackageInfo:
    """What a package file's header says (read without torch), and where it lies."""

    path: Path
    name: str
    method: str
    k: int  # custom filters per layer (CAwF); 0 for the full-codec methods
    date: str
    qualities: dict[int, QualityRecord]
    shipped: bool = False  # in models/ (pinned by the manifest), not the user's own
    generation: int = 0  # of the base models it was made on (0: none installed)

    def placed(self, *, shipped: bool, generation: int) -> "PackageInfo":
        return replace(self, shipped=shipped, generation=generation)


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


def with_hyperprior(source: Path, installed_bases: set[str], hypers: dict[int, dict],
                    out: Path, notes: dict[int, dict], sha256: str | None = None) -> PackageInfo:
    """A copy of the package ``source`` whose every quality also holds a hyperprior that
    codes its latents (``hypers``: quality -> :func:`nicodec.hyperprior.export_tensors`),
    so every quality gets a new ID; ``notes``: quality -> what to add to its training
    record. ``source`` is validated first, and so is the result."""
    meta, tensors = validate(source, installed_bases, sha256)
    if set(hypers) != set(meta.qualities):
        raise NicodecError(f"{source.name}: hyperpriors for qualities {sorted(hypers)}, "
                           f"the package has {sorted(meta.qualities)}")
    entries = {}
    for quality, info in meta.qualities.items():
        qt = {k: v for k, v in quality_tensors(tensors, quality).items()
              if not k.startswith(modelfile.HYPER_PREFIX)}
        qt |= {modelfile.HYPER_PREFIX + k: v for k, v in hypers[quality].items()}
        record = info.to_json()
        record.pop("id")
        entries[quality] = (qt, record | notes.get(quality, {}))
    save(out, name=meta.name, method=meta.method, k=meta.k, entries=entries)
    return validate(out, installed_bases)[0]


def read_meta(path: Path) -> PackageInfo:
    """The package's metadata (cheap: reads the header only), every field type-checked."""
    try:
        meta = modelfile.read_metadata(path)
    except NicodecError as e:
        raise NicodecError(f"{path.name}: not a nicodec adaptation file "
                           f"({str(e).split(': ', 1)[-1]})") from None
    if meta.get("nicodec") != "package":
        raise NicodecError(f"{path.name}: not a nicodec adaptation file (no package metadata)")
    if meta.get("format") != FORMAT:
        raise NicodecError(f"{path.name}: package format {meta.get('format')!r} is not "
                           f"supported (expected {FORMAT})")
    bad = f"{path.name}: malformed package metadata"
    try:
        raw = json.loads(meta["qualities"])
        k = int(meta["k"])
        name, method, date = meta["name"], meta["method"], meta.get("date", "")
    except (KeyError, ValueError) as e:
        raise NicodecError(f"{bad} ({e})") from None
    if not isinstance(raw, dict) or not raw:
        raise NicodecError(f"{bad} (qualities must be a non-empty JSON object)")
    qualities = {}
    for q, v in raw.items():
        if not (isinstance(q, str) and q.isdigit() and 1 <= int(q) <= 99):
            raise NicodecError(f"{bad} (quality {q!r} is not a number 1..99)")
        qualities[int(q)] = QualityRecord.parse(path.name, int(q), v)
    return PackageInfo(path=path, name=name, method=method, k=k, date=date,
                       qualities=qualities)


def validate(path: Path, installed_bases: set[str], sha256: str | None = None,
             qualities: set[int] | None = None) -> tuple[PackageInfo, dict]:
    """Load and fully check a package (and its file hash, if given) against what the codec
    can code; ``qualities``: those the installed base models define. Returns (info,
    tensors). Raises NicodecError."""
    import torch

    meta = read_meta(path)
    where = f"{path.name}"
    check_name(meta.name)
    from nicodec import methods

    if meta.method not in methods.names():
        raise NicodecError(f"{where}: unknown method {meta.method!r}")
    method = methods.get(meta.method)
    try:
        method.check_k(meta.k)
    except NicodecError as e:
        raise NicodecError(f"{where}: {e}") from None
    if qualities is not None and not set(meta.qualities) <= qualities:
        raise NicodecError(f"{where}: qualities {sorted(set(meta.qualities) - qualities)} "
                           f"are not qualities of the installed models")
    tensors, _ = modelfile.load(path, sha256)
    channels = method.latent_channels(meta.k)
    seen = set()
    for quality, info in meta.qualities.items():
        qt = quality_tensors(tensors, quality)
        seen |= {f"q{quality}.{key}" for key in qt}
        weights, _ = modelfile.split_tables(qt)
        shapes = method.expected_shapes(meta.k, **method.options_of(weights))
        if set(weights) != set(shapes):
            extra, missing = set(weights) - set(shapes), set(shapes) - set(weights)
            raise NicodecError(f"{where}: quality {quality} tensors do not match a "
                               f"{meta.method} package (unexpected {sorted(extra)[:3]}, "
                               f"missing {sorted(missing)[:3]})")
        for key, v in weights.items():
            if (tuple(v.shape), v.dtype) != shapes[key]:
                raise NicodecError(f"{where}: tensor {key} has shape {tuple(v.shape)} "
                                   f"{v.dtype}, expected {shapes[key][0]} {shapes[key][1]}")
            if not torch.isfinite(v).all():
                raise NicodecError(f"{where}: tensor {key} holds non-finite values")
            if v.numel() and float(v.abs().max()) > MAX_WEIGHT:
                raise NicodecError(f"{where}: tensor {key} holds values beyond "
                                   f"{MAX_WEIGHT:g} (no trained codec has them)")
        _check_tables(where, qt, channels)
        hyper = modelfile.hyper_tensors(qt)
        if hyper:
            _check_hyper(f"{where}: quality {quality}", hyper, channels)
        if format_id(modelfile.content_id(qt)) != info.id:
            raise NicodecError(f"{where}: quality {quality} content hash does not match its "
                               "ID (corrupt or modified file)")
        if method.extends_base and info.base_id not in installed_bases:
            raise NicodecError(f"{where}: needs base model {info.base_id}, which is "
                               "not installed")
    if set(tensors) != seen:
        raise NicodecError(f"{where}: unexpected tensors {sorted(set(tensors) - seen)[:3]}")
    return meta, tensors


def _check_hyper(where: str, hyper: dict, channels: int) -> None:
    """A quality's hyperprior (``hyper.*``) is one this release codes exactly
    (:func:`nicodec.hyperprior.check`), its z tables checked as every table is; a context
    model on it (``hyper.ctx.*``, since 0.17) likewise (:class:`nicodec.context.IntegerContext`)."""
    from nicodec import context, hyperprior

    ctx = {k[4:]: v for k, v in hyper.items() if k.startswith("ctx.")}
    try:
        hyperprior.check({k: v for k, v in hyper.items() if not k.startswith("ctx.")},
                         channels)
        if ctx:
            context.IntegerContext(ctx, channels)  # checks every tensor, then exactness
    except ValueError as e:
        raise NicodecError(f"{where}: {e}") from None
    _check_tables(f"{where} (side information)",
                  {TABLE_PREFIX + k[2:]: v for k, v in hyper.items() if k.startswith("z.")},
                  hyperprior.Z_CHANNELS)


def _check_tables(where: str, qt: dict, channels: int) -> None:
    """The frozen tables hold what :class:`~nicodec.entropy.LatentCoder` can code: per
    channel a range ``[offset, offset + length)`` around 0 no wider than
    ``MAX_TABLE_WIDTH``, a finite median within ``MAX_MEDIAN``, and a frequency row of
    positive counts summing to ``TOTAL`` (plus the escape symbol)."""
    import torch

    from nicodec.entropy import MAX_MEDIAN, MAX_TABLE_WIDTH, TOTAL

    try:
        median, offset = qt[TABLE_PREFIX + "median"], qt[TABLE_PREFIX + "offset"]
        length, freq = qt[TABLE_PREFIX + "length"], qt[TABLE_PREFIX + "freq"]
    except KeyError as e:
        raise NicodecError(f"{where}: missing entropy table {e}") from None
    shapes_ok = (median.shape == (channels,) and median.dtype == torch.float32
                 and offset.shape == (channels,) and offset.dtype == torch.int32
                 and length.shape == (channels,) and length.dtype == torch.int32
                 and freq.dim() == 2 and freq.shape[0] == channels
                 and freq.dtype == torch.int32)
    if not shapes_ok:
        raise NicodecError(f"{where}: malformed entropy tables (shapes or types)")
    if not (bool(torch.isfinite(median).all()) and float(median.abs().max()) <= MAX_MEDIAN):
        raise NicodecError(f"{where}: malformed entropy tables (medians beyond "
                           f"+-{MAX_MEDIAN:g})")
    if freq.shape[1] > MAX_TABLE_WIDTH + 1:
        raise NicodecError(f"{where}: malformed entropy tables (rows of {freq.shape[1]} "
                           f"symbols; at most {MAX_TABLE_WIDTH + 1})")
    top = offset.long() + length.long() - 1
    if not (bool((length >= 1).all()) and int(length.max()) < freq.shape[1]
            and bool((offset <= 0).all()) and bool((top >= 0).all())):
        raise NicodecError(f"{where}: malformed entropy tables (offsets or lengths out of "
                           "range)")
    if not bool((freq >= 0).all()):
        raise NicodecError(f"{where}: malformed entropy tables (negative frequencies)")
    for c in range(channels):
        row = freq[c, : int(length[c]) + 1]
        if int(row.sum()) != TOTAL or int(row.min()) < 1:
            raise NicodecError(f"{where}: malformed entropy tables (channel {c}'s "
                               f"frequencies do not sum to {TOTAL})")
