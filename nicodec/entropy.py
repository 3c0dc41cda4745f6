"""Entropy coding of quantized latents with constriction's rANS coder.

The factorized prior gives every latent channel c its own discrete distribution over
symbols ``q = round(y - median_c)``. At export these are frozen into integer *frequency
tables* (:func:`build_tables`), stored in the model file and never recomputed at load:

    offset[c]   smallest in-table symbol (int32)
    length[c]   number of in-table symbols L_c
    freq[c, :]  L_c frequencies, then one ESCAPE frequency, summing to 2**PRECISION
    median[c]   float32 quantization centre

Coding (:class:`LatentCoder`) uses one ``Categorical(perfect=False)`` model per channel. A
symbol outside ``[offset, offset + L)`` is coded as ESCAPE followed by its value on the
escape path (sign, bit length, bits: uniform models), so any latent round-trips exactly.

Stream layout (ANS is a stack; the coder pushes in reverse so the decoder pops forwards):
for c = 0..C-1: the H*W symbols of channel c, then the escape values of channel c in
raster order. The compressed words are uint32, written little-endian.
"""

from __future__ import annotations

import constriction
import numpy as np
import torch

from nicodec.errors import NicodecError

PRECISION = 20  # frequencies sum to 2**20
TOTAL = 1 << PRECISION
ESCAPE_BITS_MAX = 31  # escaped magnitudes are below 2**31
# What a table may hold (checked when a package is imported): trained tables span a few
# hundred symbols around medians of a few units.
MAX_TABLE_WIDTH = 4096
MAX_MEDIAN = 1 << 16
CODER_NAME = 1  # header code for "constriction rANS, per-channel categorical"


def coder_version() -> tuple[int, int]:
    """(major, minor) of the installed constriction; its bitstream is stable within a minor."""
    from importlib.metadata import version

    major, minor = version("constriction").split(".")[:2]
    return int(major), int(minor)


def quantize_frequencies(p: np.ndarray, total: int = TOTAL) -> np.ndarray:
    """Integer frequencies >= 1 summing exactly to ``total``, close to ``p * total``."""
    p = np.maximum(np.asarray(p, np.float64), 0)
    p = p / p.sum()
    f = np.maximum(1, np.floor(p * total)).astype(np.int64)
    f[np.argmax(f)] += total - f.sum()
    if f.min() < 1:  # only possible for absurdly long tables
        raise ValueError("table too long for the frequency precision")
    return f


@torch.no_grad()
def build_tables(eb) -> dict[str, torch.Tensor]:
    """Freeze an EntropyBottleneck's per-channel densities into frequency tables.

    Table range per channel: CompressAI's quantile-based range (``update()``), i.e. the
    symbols that carry all but ``tail_mass`` of the probability; the tails go to ESCAPE.
    """
    q = eb.quantiles.detach().double().cpu()
    medians = q[:, 0, 1]
    minima = torch.clamp(torch.ceil(medians - q[:, 0, 0]), min=0).long()
    maxima = torch.clamp(torch.ceil(q[:, 0, 2] - medians), min=0).long()
    lengths = (minima + maxima + 1)
    max_len = int(lengths.max())
    eb64 = _double_copy(eb)
    samples = torch.arange(max_len, dtype=torch.float64)[None, :] + (medians - minima)[:, None]
    pmf, lower, upper = eb64._likelihood(samples[:, None, :], stop_gradient=True)
    pmf = pmf[:, 0, :].numpy()
    tail = (torch.sigmoid(lower[:, 0, 0]) + torch.sigmoid(-upper[:, 0, -1])).numpy()
    freq = np.zeros((len(medians), max_len + 1), np.int32)
    for c in range(len(medians)):
        n = int(lengths[c])
        freq[c, : n + 1] = quantize_frequencies(np.append(pmf[c, :n], max(tail[c], 1e-9)))
    return {
        "median": medians.float(),
        "offset": (-minima).int(),
        "length": lengths.int(),
        "freq": torch.from_numpy(freq),
    }


def _double_copy(eb):
    """A float64 copy of a CompressAI EntropyBottleneck (export time only)."""
    from compressai.entropy_models import EntropyBottleneck

    clone = EntropyBottleneck(eb.channels, filters=eb.filters, tail_mass=eb.tail_mass)
    params = {k: v for k, v in eb.state_dict().items() if not k.startswith("_")}
    clone.load_state_dict(params, strict=False)
    return clone.double()



def _unit_grid(step: int) -> None:
    if step:
        raise ValueError("per-channel tables code the unit grid only (quantisation steps "
                         "need a hyperprior model)")

class LatentCoder:
    """Encodes/decodes integer latents (C, H, W) with frozen per-channel tables."""

    NAME = CODER_NAME  # the header's coder code

    def __init__(self, tables: dict[str, torch.Tensor]):
        length = tables["length"].numpy().astype(np.int64)
        freq = tables["freq"].numpy()
        self._setup(tables["median"].float(), tables["offset"], length,
                    [freq[c, : length[c] + 1] for c in range(len(length))])

    @classmethod
    def from_ragged(cls, offset, length, freqs: list[np.ndarray]) -> "LatentCoder":
        """A coder of tables of different lengths (``freqs[c]``: L_c + 1 frequencies), such
        as :mod:`nicodec.hyperprior`'s Gaussian tables; its ``median`` is 0."""
        self = cls.__new__(cls)
        self._setup(torch.zeros(len(freqs)), offset, length, freqs)
        return self

    def _setup(self, median, offset, length, freqs: list[np.ndarray]) -> None:
        self.median = median
        self.offset = np.asarray(offset, np.int64)
        self.length = np.asarray(length, np.int64)
        self.channels = len(self.offset)
        self.freq = freqs
        self.models = _Models(self.freq)
        self.bits_model = constriction.stream.model.Uniform(ESCAPE_BITS_MAX + 1)
        self.sign_model = constriction.stream.model.Uniform(2)

    # symbols are table indices: index = q - offset, ESCAPE = length
    def symbols(self, c: int, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        idx = q.astype(np.int64) - self.offset[c]
        esc = (idx < 0) | (idx >= self.length[c])
        idx[esc] = self.length[c]
        return idx.astype(np.int32), q[esc]

    def encode(self, q: np.ndarray, step: int = 0) -> bytes:
        """Integer latents (C, H, W) -> compressed bytes (uint32 words, little-endian).
        ``step``: the grid, always the unit one (0) for these per-channel tables (the
        interface of :class:`~nicodec.hyperprior.HyperCoder`, which codes others)."""
        _unit_grid(step)
        if q.ndim != 3 or q.shape[0] != self.channels:
            raise ValueError(f"expected ({self.channels}, H, W) latents, got {q.shape}")
        coder = constriction.stream.stack.AnsCoder()
        self.push(coder, q)
        return coder.get_compressed().astype("<u4").tobytes()

    def push(self, coder, q: np.ndarray) -> None:
        """Push latents (C, H, W) onto an ANS coder so that :meth:`pop` reads them first."""
        flat = q.reshape(self.channels, -1)
        for c in reversed(range(self.channels)):
            self.push_symbols(coder, c, flat[c])

    def push_symbols(self, coder, c: int, values: np.ndarray) -> None:
        """Push integer values (n,) coded with table ``c`` (escapes included)."""
        idx, escaped = self.symbols(c, values)
        self._encode_escapes(coder, escaped, c)
        coder.encode_reverse(idx, self.models[c])

    def _encode_escapes(self, coder, values: np.ndarray, c: int) -> None:
        lo, hi = self.offset[c], self.offset[c] + self.length[c] - 1
        for v in reversed(values.tolist()):
            neg = v < lo
            mag = (lo - v) if neg else (v - hi)  # >= 1
            nbits = int(mag).bit_length()
            if nbits > ESCAPE_BITS_MAX:
                raise ValueError("latent value out of codable range")
            rest = mag - (1 << (nbits - 1))  # the leading 1 bit is implicit
            # pushed in reverse of the decoder's pop order: sign, nbits, then bits
            for b in reversed(range(nbits - 1)):
                coder.encode_reverse(int((rest >> b) & 1), self.sign_model)
            coder.encode_reverse(nbits, self.bits_model)
            coder.encode_reverse(int(neg), self.sign_model)

    def decode(self, data: bytes, shape: tuple[int, int, int], strict: bool = True,
               step: int = 0) -> np.ndarray:
        """Compressed bytes -> integer latents of ``shape`` (C, H, W), int32 (``step``: 0).

        ``strict=False`` skips the end-of-stream check: for decoding a file with tables it
        was not written with (``decode --force-model``), where garbage is the point."""
        _unit_grid(step)
        c_, h, w = shape
        if c_ != self.channels:
            raise NicodecError("latent channel count does not match the model")
        if len(data) % 4:
            raise NicodecError("corrupt payload: length is not a whole number of words")
        if strict and 8 * len(data) < self.min_bits(h * w):
            raise NicodecError(f"corrupt payload: {len(data):,} bytes cannot hold the "
                               f"latents of the declared image size (at least "
                               f"{self.min_bits(h * w) / 8:,.0f} bytes)")
        words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
        try:
            coder = constriction.stream.stack.AnsCoder(words)
        except Exception as e:  # constriction rejects e.g. a zero final word
            raise NicodecError(f"corrupt payload: {e}") from None
        q = self.pop(coder, shape, strict)
        # Every symbol was pushed onto an empty coder: decoding them all must consume the
        # stream exactly and end in the initial state. That alone misses a stream cut short
        # (the decoder's state drains to the initial one and "decodes" the rest), so the
        # latents are also coded again: the encoder is deterministic, so a payload is valid
        # exactly when it is the encoding of what it decodes to. Anything else (trailing or
        # missing words, a stream that was cut or altered) is refused.
        if strict and (not coder.is_empty() or self.encode(q) != bytes(data)):
            raise NicodecError("corrupt payload: the entropy-coded stream does not end where "
                               "the latents do")
        return q

    def pop(self, coder, shape: tuple[int, int, int], strict: bool = True,
            last: bool = True) -> np.ndarray:
        """Pop latents of ``shape`` (C, H, W) that :meth:`push` pushed, int32. ``strict``
        refuses a stream that drains before they end (``last``: nothing else follows
        them in the stream)."""
        c_, h, w = shape
        out = np.empty((c_, h * w), np.int32)
        for c in range(c_):
            out[c] = self.pop_symbols(coder, c, h * w, strict and last and c == c_ - 1)
            if strict and (c < c_ - 1 or not last) and coder.is_empty():
                # drained before the last channel: the rest would be decoded from nothing
                raise NicodecError("corrupt payload: the entropy-coded stream ends before "
                                   "the latents do")
        return out.reshape(c_, h, w)

    def pop_symbols(self, coder, c: int, n: int, check_drain: bool = False) -> np.ndarray:
        """Pop ``n`` values that :meth:`push_symbols` pushed with table ``c`` (int64)."""
        idx = self._decode_channel(coder, c, n, check_drain)
        vals = idx + self.offset[c]
        esc = np.nonzero(idx == self.length[c])[0]
        lo, hi = self.offset[c], self.offset[c] + self.length[c] - 1
        for pos in esc:
            neg = coder.decode(self.sign_model)
            nbits = coder.decode(self.bits_model)
            if nbits < 1:
                raise NicodecError("corrupt payload: bad escape code")
            rest = 0
            for b in range(nbits - 1):
                rest |= coder.decode(self.sign_model) << b
            mag = (1 << (nbits - 1)) + rest
            vals[pos] = lo - mag if neg else hi + mag
        return vals

    def _decode_channel(self, coder, c: int, n: int, check_drain: bool) -> np.ndarray:
        """One channel's table indices; ``check_drain`` (the last channel) decodes it in
        eighths and refuses a stream that is empty before its end (see :meth:`decode`)."""
        if not check_drain:
            return coder.decode(self.models[c], n).astype(np.int64)
        parts, done, step = [], 0, max(1, -(-n // 8))
        while done < n:
            if done and coder.is_empty():
                raise NicodecError("corrupt payload: the entropy-coded stream ends before "
                                   "the latents do")
            k = min(step, n - done)
            parts.append(coder.decode(self.models[c], k).astype(np.int64))
            done += k
        return np.concatenate(parts)

    def min_bits(self, symbols_per_channel: int) -> float:
        """A lower bound on the payload of any latents of that many symbols per channel:
        each symbol costs at least ``-log2`` of its channel's most likely symbol (less 2 %
        for the coder's own rounding of the tables, and its 64-bit state)."""
        if not hasattr(self, "_min_bits_per_symbol"):
            self._min_bits_per_symbol = float(sum(
                -np.log2(f.max() / TOTAL) for f in self.freq))
        return max(0.0, 0.98 * self._min_bits_per_symbol * symbols_per_channel - 64)

    def ideal_bits(self, q: np.ndarray, step: int = 0) -> float:
        """Sum of -log2 p over the symbols under the frozen tables (escape payload included;
        ``step``: 0)."""
        _unit_grid(step)
        flat = q.reshape(self.channels, -1)
        return sum(self.ideal_bits_of(c, flat[c]) for c in range(self.channels))

    def ideal_bits_of(self, c: int, values: np.ndarray) -> float:
        """Sum of -log2 p of values (n,) under table ``c`` (escape payload included)."""
        idx, escaped = self.symbols(c, values)
        bits = float(-np.log2(self.freq[c][idx] / TOTAL).sum())
        lo, hi = self.offset[c], self.offset[c] + self.length[c] - 1
        for v in escaped.tolist():
            mag = (lo - v) if v < lo else (v - hi)
            bits += 1 + np.log2(ESCAPE_BITS_MAX + 1) + (int(mag).bit_length() - 1)
        return bits


class _Models:
    """constriction models of frequency tables, built on first use (a hyperprior has
    hundreds of tables, of which an image uses some)."""

    def __init__(self, freqs: list[np.ndarray]):
        self.freqs = freqs
        self.built: dict[int, object] = {}

    def __getitem__(self, c: int):
        if c not in self.built:
            self.built[c] = constriction.stream.model.Categorical(
                self.freqs[c].astype(np.float64) / TOTAL, perfect=False)
        return self.built[c]
