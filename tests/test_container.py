import struct
import zlib

import pytest

from nicodec import container
from nicodec.container import HEADER_SIZE, Header, pack, parse
from nicodec.errors import NicodecError

HDR = Header(quality=3, channels=3, width=37, height=53, base_id=0xDEADBEEF,
             adapter_id=0x01020304, coder_version=5)


def test_header_is_32_bytes_little_endian_and_round_trips():
    data = pack(HDR, b"payload!")
    assert HEADER_SIZE == 32 and len(data) == 40
    assert data[:4] == b"NIC\x1a"
    assert data[10:12] == (37).to_bytes(2, "little")
    assert data[16:20] == (0xDEADBEEF).to_bytes(4, "little")
    h, payload = parse(data)
    assert payload == b"payload!"
    assert (h.width, h.height, h.quality, h.base_id, h.adapter_id) == (37, 53, 3, 0xDEADBEEF,
                                                                       0x01020304)
    assert h.payload_length == 8


def _recrc(data: bytes) -> bytes:
    head, payload = data[:28], data[32:]
    return head + struct.pack("<I", zlib.crc32(payload, zlib.crc32(head))) + payload


@pytest.mark.parametrize("mutate, message", [
    (lambda d: b"PNG\x00" + d[4:], "wrong magic"),
    (lambda d: d[:20], "truncated"),
    (lambda d: d[:-1], "truncated"),
    (lambda d: d + b"x", "trailing"),
    (lambda d: d[:-2] + bytes([d[-2] ^ 1]) + d[-1:], "CRC32"),
    (lambda d: d[:6] + bytes([d[6] ^ 4]) + d[7:], "CRC32"),
    (lambda d: _recrc(d[:4] + bytes([4]) + d[5:]), "format version 4"),
    (lambda d: _recrc(d[:10] + struct.pack("<HH", 0, 10) + d[14:]), "outside the supported"),
    (lambda d: _recrc(d[:10] + struct.pack("<HH", 60000, 60000) + d[14:]), "outside the"),
    (lambda d: d[:24] + struct.pack("<I", 2 ** 31) + d[28:], "declared payload"),
])
def test_malformed_files_are_refused_with_a_clear_error(mutate, message):
    with pytest.raises(NicodecError, match=message):
        parse(mutate(pack(HDR, b"some payload")))


def test_ids_print_as_8_hex_digits():
    assert container.format_id(0xAB) == "000000ab"
    assert container.parse_id("000000ab") == 0xAB
    with pytest.raises(NicodecError):
        container.parse_id("xyz")
