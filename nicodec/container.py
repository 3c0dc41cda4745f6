"""The ``.nic`` container: a fixed 32-byte little-endian header, then the payload.

See ``docs/format.md`` for the byte layout. This module is the only place that reads or
writes it; every check on untrusted bytes happens in :func:`parse` before anything is
allocated from the declared sizes.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import asdict, dataclass

from nicodec.errors import NicodecError

MAGIC = b"NIC\x1a"
FORMAT_VERSION = 3  # the newest this release reads and writes
TILED_VERSION = 2  # version 2: decoded in tiles (nicodec.tiling); version 1: whole image
STEP_VERSION = 3  # version 3: flags hold a quantisation step and whether it is tiled
FLAG_TILED = 0x100  # version 3: decoded in tiles; the low byte is the step exponent (int8)
HEADER = struct.Struct("<4sBBBBHHHHIIII")
HEADER_SIZE = HEADER.size  # 32
CRC_OFFSET = HEADER_SIZE - 4
NO_ADAPTER = 0

MAX_SIDE = 32768  # pixels, per side
MAX_PIXELS = 1 << 28  # 268 M pixels
MAX_PAYLOAD = 1 << 30
CHANNELS = (1, 3)  # greyscale (decoded as L) or RGB
# entropy coders (the header's coder field): the factorized prior's per-channel tables, and
# the hyperprior's (nicodec.hyperprior, since 0.14), the hyperprior with a context model
# (nicodec.context, since 0.16)
CODERS = {1: "constriction-rans", 2: "constriction-rans-hyperprior",
          3: "constriction-rans-hyperprior-context"}


@dataclass(frozen=True)
class Header:
    """Every field of a ``.nic`` header except the magic and the CRC."""

    quality: int  # 1..4
    channels: int  # 1 (greyscale) or 3 (RGB): the colour mode the decoder writes
    width: int
    height: int
    base_id: int  # uint32: first 4 bytes of the base weights' content hash
    adapter_id: int = NO_ADAPTER  # uint32; 0 = base codec
    coder: int = 1  # CODERS: 1 = per-channel tables, 2 = hyperprior, 3 = + context (rANS)
    coder_version: int = 0  # (major << 8) | minor of constriction
    flags: int = 0  # 0 before version 3; version 3: step exponent (int8) | FLAG_TILED
    version: int = 1  # 2 (TILED_VERSION) for images coded in tiles, 3 with a step
    payload_length: int = 0

    @property
    def tiled(self) -> bool:
        """Whether the synthesis runs in tiles (:mod:`nicodec.tiling`)."""
        if self.version >= STEP_VERSION:
            return bool(self.flags & FLAG_TILED)
        return self.version >= TILED_VERSION

    @property
    def step(self) -> int:
        """The quantisation step exponent e: latents decode to ``step_size(e) * q + median``
        (:mod:`nicodec.hyperprior`); 0 (the unit grid) before version 3."""
        if self.version < STEP_VERSION:
            return 0
        low = self.flags & 0xFF
        return low - 256 if low >= 128 else low

    def as_dict(self) -> dict:
        d = asdict(self)
        d["base_id"] = format_id(self.base_id)
        d["adapter_id"] = format_id(self.adapter_id) if self.adapter_id else None
        major, minor = divmod(self.coder_version, 256)
        d["coder"] = CODERS.get(self.coder, f"unknown({self.coder})")
        d["coder_version"] = f"{major}.{minor}"
        d["step"], d["tiled"] = self.step, self.tiled
        return d


def layout(tiled: bool, step: int = 0) -> dict:
    """The ``version`` and ``flags`` of a file coded whole or in tiles on the grid of step
    exponent ``step``: the oldest version that says so (1 or 2 for the unit grid, which
    every release reads; 3 for another step)."""
    if step == 0:
        return {"version": TILED_VERSION if tiled else 1, "flags": 0}
    if not -128 <= step <= 127:
        raise ValueError(f"step exponent {step} does not fit the header")
    return {"version": STEP_VERSION, "flags": (FLAG_TILED if tiled else 0) | (step & 0xFF)}


def format_id(i: int) -> str:
    return f"{i:08x}"


def parse_id(s: str) -> int:
    try:
        v = int(s, 16)
    except ValueError:
        raise NicodecError(f"not a model ID: {s!r} (expected 8 hex digits)") from None
    if len(s) != 8:
        raise NicodecError(f"not a model ID: {s!r} (expected 8 hex digits)")
    return v


def check_size(width: int, height: int) -> None:
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE) or width * height > MAX_PIXELS:
        raise NicodecError(f"image size {width}x{height} is outside the supported range "
                           f"(each side 1..{MAX_SIDE}, at most {MAX_PIXELS} pixels)")


def pack(header: Header, payload: bytes) -> bytes:
    """Header + payload -> file bytes, with payload length and CRC32 filled in."""
    check_size(header.width, header.height)
    if header.channels not in CHANNELS:
        raise ValueError(f"channels must be one of {CHANNELS}")
    head = HEADER.pack(MAGIC, header.version, header.quality, header.channels, header.coder,
                       header.coder_version, header.width, header.height, header.flags,
                       header.base_id, header.adapter_id, len(payload), 0)[:CRC_OFFSET]
    crc = zlib.crc32(payload, zlib.crc32(head))
    return head + struct.pack("<I", crc) + payload


def check_magic(data: bytes) -> None:
    """Raise NicodecError unless ``data`` (a file's first bytes or all of them) opens with
    the .nic magic."""
    if len(data) < 4 or data[:4] != MAGIC:
        raise NicodecError("not a .nic file (wrong magic bytes)")


def parse(data: bytes) -> tuple[Header, bytes]:
    """File bytes -> (header, payload). Raises NicodecError on anything malformed."""
    check_magic(data)
    if len(data) < HEADER_SIZE:
        raise NicodecError("truncated .nic file (incomplete header)")
    (_, version, quality, channels, coder, coder_version, width, height, flags, base_id,
     adapter_id, length, crc) = HEADER.unpack_from(data)
    if version > FORMAT_VERSION:
        raise NicodecError(f"file uses format version {version}; this nicodec reads up to "
                           f"{FORMAT_VERSION} (upgrade nicodec)")
    if version < 1:
        raise NicodecError(f"corrupt .nic file (format version {version})")
    if length > MAX_PAYLOAD:
        raise NicodecError(f"corrupt .nic file (declared payload of {length} bytes)")
    if len(data) < HEADER_SIZE + length:
        raise NicodecError(f"truncated .nic file ({len(data) - HEADER_SIZE} of {length} "
                           "payload bytes)")
    if len(data) > HEADER_SIZE + length:
        raise NicodecError("corrupt .nic file (trailing bytes after the payload)")
    payload = data[HEADER_SIZE:]
    if zlib.crc32(payload, zlib.crc32(data[:CRC_OFFSET])) != crc:
        raise NicodecError("corrupt .nic file (CRC32 mismatch)")
    flags_ok = (flags == 0 if version < STEP_VERSION
                else flags & ~(FLAG_TILED | 0xFF) == 0 and flags & 0xFF != 0)
    if not flags_ok or channels not in CHANNELS or not 1 <= quality <= 255:
        raise NicodecError("corrupt .nic file (invalid header fields)")
    check_size(width, height)
    return Header(quality=quality, channels=channels, width=width, height=height,
                  base_id=base_id, adapter_id=adapter_id, coder=coder,
                  coder_version=coder_version, flags=flags, version=version,
                  payload_length=length), payload
