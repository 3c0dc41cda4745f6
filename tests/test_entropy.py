import numpy as np
import pytest
import torch

from nicodec.entropy import TOTAL, LatentCoder, build_tables, quantize_frequencies
from nicodec.errors import NicodecError
from nicodec.network import FactorizedPrior


@pytest.fixture(scope="module")
def coder():
    torch.manual_seed(0)
    m = FactorizedPrior()
    return LatentCoder(build_tables(m.entropy_bottleneck))


def test_frequencies_are_positive_and_sum_exactly():
    f = quantize_frequencies(np.array([0.5, 1e-12, 0.25, 0.25, 0.0]))
    assert f.sum() == TOTAL and f.min() >= 1


def test_tables_have_an_escape_slot_per_channel(coder):
    for c in range(coder.channels):
        assert len(coder.freq[c]) == coder.length[c] + 1
        assert coder.freq[c].sum() == TOTAL


def test_round_trip_in_table_symbols(coder):
    q = np.random.default_rng(1).integers(-3, 4, size=(64, 5, 7)).astype(np.int32)
    assert np.array_equal(coder.decode(coder.encode(q), q.shape), q)


def test_escape_path_round_trips_any_value(coder):
    rng = np.random.default_rng(2)
    q = rng.integers(-2, 3, size=(64, 4, 6)).astype(np.int32)
    lo, hi = coder.offset[0], coder.offset[0] + coder.length[0] - 1
    q[0, 0, :4] = [lo - 1, hi + 1, -(2 ** 30), 2 ** 30]
    q[63, 3, 5] = 123456
    data = coder.encode(q)
    assert np.array_equal(coder.decode(data, q.shape), q)


def test_overhead_over_ideal_code_length_is_tiny(coder):
    q = np.random.default_rng(3).integers(-4, 5, size=(64, 32, 48)).astype(np.int32)
    actual = 8 * len(coder.encode(q))
    ideal = coder.ideal_bits(q)
    assert ideal <= actual < ideal * 1.001 + 64


def test_words_are_little_endian(coder):
    q = np.zeros((64, 2, 2), np.int32)
    data = coder.encode(q)
    import constriction

    enc = constriction.stream.stack.AnsCoder()
    for c in reversed(range(64)):
        enc.encode_reverse(coder.symbols(c, q[c].ravel())[0], coder.models[c])
    assert data == enc.get_compressed().astype("<u4").tobytes()


def test_garbage_payload_is_a_clear_error(coder):
    with pytest.raises(NicodecError):
        coder.decode(b"\x01\x02\x03", (64, 2, 2))


def test_a_stream_with_trailing_or_altered_words_is_refused(coder):
    rng = np.random.default_rng(3)
    q = rng.integers(-3, 4, (64, 3, 5)).astype(np.int32)
    q[5, 1, 2] = 1000  # an escaped value too
    data = coder.encode(q)
    assert np.array_equal(coder.decode(data, q.shape), q)
    with pytest.raises(NicodecError, match="does not end where the latents do"):
        coder.decode(b"\x07\x00\x00\x00" + data, q.shape)  # a word left over at the end
    with pytest.raises(NicodecError):
        coder.decode(data + b"\x07\x00\x00\x00", q.shape)  # a word decoded first
    words = bytearray(data)
    words[-1] ^= 0x40  # the last word is decoded first: alter it
    with pytest.raises(NicodecError):
        coder.decode(bytes(words), q.shape)


def test_every_cut_of_a_stream_is_refused(coder):
    """A stream cut short drains the decoder to its initial state, which then "decodes"
    the rest from nothing: every whole-word prefix and suffix must still be refused."""
    rng = np.random.default_rng(4)
    q = rng.integers(-4, 5, (64, 4, 6)).astype(np.int32)
    data = coder.encode(q)
    for k in range(4, len(data), 4):
        for cut in (data[:k], data[k:]):
            with pytest.raises(NicodecError):
                coder.decode(cut, q.shape)


def test_a_payload_too_short_for_the_declared_size_is_refused_at_once(coder):
    data = coder.encode(np.zeros((64, 2, 2), np.int32))
    with pytest.raises(NicodecError, match="cannot hold the latents"):
        coder.decode(data, (64, 1024, 1024))
