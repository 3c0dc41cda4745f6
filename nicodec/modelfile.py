"""Model and adapter files: the bottom layer every other module builds on.

A model file is safetensors (never a pickle): the network's tensors, plus its frozen entropy
tables under ``tables.*`` (:data:`TABLE_KEYS`, see :mod:`nicodec.entropy`), and a string map
of metadata. An adapter package stores the same per quality under ``q<Q>.``.

This module owns

* **content IDs**: a model's ID is the first 4 bytes of the sha256 over its tensors' names,
  dtypes, shapes and little-endian bytes in name order (:func:`content_hash`), never a
  position in a list; 0 is reserved for "no adapter";
* the **weights/tables split** (:func:`split_tables`);
* reading (:func:`read_metadata` reads the header alone, without torch; :func:`load`
  parses and verifies the file hash) and writing (:func:`save`);
* **atomic writes** (:func:`atomic_write`): a temporary file in the same directory, then a
  rename, so a reader never sees half a file; the file gets mode 0666 minus the umask
  (0644 usually), like any file a program creates.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from nicodec.errors import NicodecError

if TYPE_CHECKING:  # torch is imported only where tensors are touched
    import torch

TABLE_PREFIX = "tables."
HYPER_PREFIX = "hyper."  # a hyperprior entropy model's tensors (since 0.14)
TABLE_KEYS = ("median", "offset", "length", "freq")
MAX_HEADER = 100 << 20  # safetensors' own limit on the JSON header


# --------------------------------------------------------------------------- writing
def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all (temporary file + rename)."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise NicodecError(f"{path}: directory {directory} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=directory)
    except OSError as e:
        raise NicodecError(f"{path}: cannot write ({e.strerror})") from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise NicodecError(f"{path}: cannot write ({e.strerror})") from None
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save(tensors: dict[str, "torch.Tensor"], path: Path, metadata: dict[str, str]) -> None:
    """Write a safetensors model file atomically (tensors made contiguous)."""
    from safetensors.torch import save

    data = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()},
                metadata=metadata)
    atomic_write(Path(path), data)


# --------------------------------------------------------------------------- reading
def check_regular(path: Path) -> None:
    """Refuse anything but a regular file up front: a FIFO or a device would block or
    stream forever."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise NicodecError(f"{Path(path).name}: cannot read ({e.strerror})") from None
    if not stat.S_ISREG(mode):
        raise NicodecError(f"{Path(path).name}: not a regular file")


def read_metadata(path: Path) -> dict[str, str]:
    """The metadata string map of a safetensors file, from its header alone (no torch)."""
    return _read_header(path)[1]


def tensor_names(path: Path) -> list[str]:
    """The names of a safetensors file's tensors, from its header alone (no torch)."""
    return _read_header(path)[0]


def _read_header(path: Path) -> tuple[list[str], dict[str, str]]:
    """(tensor names, metadata) of a checked safetensors header; NicodecError if malformed."""
    path = Path(path)
    check_regular(path)
    try:
        with path.open("rb") as f:
            head = f.read(8)
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER:
                raise ValueError("header too large")
            header = json.loads(f.read(n))
            size = os.fstat(f.fileno()).st_size
        ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
        if 8 + n + max(ends, default=0) != size:
            raise ValueError("the file does not hold exactly the data its header describes")
    except (OSError, struct.error, ValueError, UnicodeDecodeError, TypeError, KeyError,
            IndexError, AttributeError) as e:
        raise NicodecError(f"{path.name}: not a valid safetensors file ({e})") from None
    meta = header.get("__metadata__")
    if meta is not None and not (isinstance(meta, dict) and
                                 all(isinstance(v, str) for v in meta.values())):
        raise NicodecError(f"{path.name}: not a valid safetensors file (bad metadata)")
    return [k for k in header if k != "__metadata__"], dict(meta or {})


def parse(data: bytes, name: str) -> tuple[dict, dict]:
    """(tensors, metadata) of safetensors bytes (never a pickle); NicodecError if malformed."""
    import safetensors.torch
    from safetensors import SafetensorError

    try:
        (n,) = struct.unpack_from("<Q", data)
        meta = json.loads(data[8:8 + n]).get("__metadata__") or {}
        return safetensors.torch.load(data), meta
    except (SafetensorError, struct.error, ValueError, AttributeError) as e:
        raise NicodecError(f"{name}: not a valid safetensors file ({e})") from None


def load(path: Path, sha256: str | None = None) -> tuple[dict, dict]:
    """Load a model file, reading it once; verify its file hash against ``sha256`` if given."""
    path = Path(path)
    check_regular(path)
    data = path.read_bytes()
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise NicodecError(f"{path.name}: file hash does not match the manifest "
                           "(corrupt or modified model file)")
    return parse(data, path.name)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --------------------------------------------------------------------------- content
def content_hash(tensors: dict[str, "torch.Tensor"]) -> str:
    """sha256 over the tensors' names, dtypes, shapes and little-endian bytes."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def content_id(tensors: dict[str, "torch.Tensor"]) -> int:
    """A model's 32-bit ID: the first 4 bytes of its :func:`content_hash`."""
    i = int(content_hash(tensors)[:8], 16)
    if i == 0:  # 0 means "no adapter" in the container; astronomically unlikely
        raise NicodecError("model content hash collides with the reserved ID 0")
    return i


def split_tables(tensors: dict) -> tuple[dict, dict]:
    """(network weights, entropy tables without their prefix) of one model's tensors; a
    hyperprior's tensors (:func:`hyper_tensors`) are in neither."""
    weights = {k: v for k, v in tensors.items()
               if not k.startswith((TABLE_PREFIX, HYPER_PREFIX))}
    tables = {k[len(TABLE_PREFIX):]: v for k, v in tensors.items()
              if k.startswith(TABLE_PREFIX)}
    return weights, tables


def hyper_tensors(tensors: dict) -> dict:
    """The hyperprior of one model's tensors (``hyper.*``, without the prefix; empty for a
    factorized-prior model): see :mod:`nicodec.hyperprior`."""
    return {k[len(HYPER_PREFIX):]: v for k, v in tensors.items() if k.startswith(HYPER_PREFIX)}
