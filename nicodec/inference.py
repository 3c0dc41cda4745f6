"""The frozen networks that encode and decode, in plain torch on the shipped tensors.

Coding needs no training machinery: this module runs the analysis ``g_a`` and synthesis
``g_s`` of a base model, a CAwF-adapted model, or a selective/naive codec straight from the
tensors of its file, without CompressAI. Every operation is the one the training network
(:mod:`nicodec.network`) performs at inference, in the same order and precision, so outputs
are bit-identical (tests: ``test_inference.py``, the golden file and ``tests/compat``):

* GDN (Ballé et al. 2016): ``y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2)`` (IGDN
  multiplies), with CompressAI's non-negative reparametrization of the stored values,
  ``beta = max(beta_raw, bound)^2 - pedestal`` (the ``bound`` and ``pedestal`` are in the file);
* CAwF (paper section 3.2): every layer's weight is the block matrix of the frozen base block
  and the adapter's custom blocks (:func:`wide_conv`, :func:`wide_deconv`, :func:`wide_gdn`),
  built once at load;
* the channel affine ``z~ = alpha z + beta`` after a convolution, where the model has one.

Tensors: images ``x`` (B, 3, H, W) floats in [0, 1]; latents ``y`` (B, C, H/16, W/16).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

KERNEL = 5
STRIDE = 2
N_LAYERS = 4
# Density filters of the factorized entropy model: 97 parameters per latent channel, the
# count of the paper's Table 3 (6,208 for 64 channels, 7,760 for 80).
EB_FILTERS = (3, 5, 5, 3)


def density_filter_shapes(channels: int, prefix: str,
                          filters: tuple[int, ...] = EB_FILTERS) -> dict[str, tuple]:
    """The shapes of a factorized density's layers ``f_k`` (CompressAI's
    ``EntropyBottleneck``): ``matrices.k`` (C, out, in), ``biases.k`` (C, out, 1) and,
    except the last, ``factors.k`` (C, out, 1), under ``prefix``."""
    dims = (1, *filters, 1)
    shapes = {}
    for k, (cin, cout) in enumerate(zip(dims, dims[1:])):
        shapes[f"{prefix}matrices.{k}"] = (channels, cout, cin)
        shapes[f"{prefix}biases.{k}"] = (channels, cout, 1)
        if k < len(dims) - 2:
            shapes[f"{prefix}factors.{k}"] = (channels, cout, 1)
    return shapes
DOWNSAMPLING = STRIDE**N_LAYERS  # 16: images are padded to a multiple of this
GDN_INDICES = (1, 3, 5)  # positions of the GDN/IGDN modules in g_a / g_s
CONV_INDICES = (0, 2, 4, 6)


def bf16_is_fast(device: str) -> bool:
    """Whether bf16 convolutions are faster than fp32 here: CUDA with bf16, or a CPU with
    AMX or AVX512-BF16 units. (Elsewhere oneDNN emulates bf16 and a step takes about 2x
    longer than in fp32: measured 441 vs 196 ms on an AVX512 CPU without them.)"""
    if device.startswith("cuda"):
        return torch.cuda.is_bf16_supported()
    return torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()


def nonnegative(raw: torch.Tensor, bound: torch.Tensor, pedestal: torch.Tensor) -> torch.Tensor:
    """CompressAI's NonNegativeParametrizer at inference: ``max(raw, bound)^2 - pedestal``."""
    return torch.max(raw, bound) ** 2 - pedestal


def gdn(x: torch.Tensor, beta: torch.Tensor, gamma: torch.Tensor, inverse: bool) -> torch.Tensor:
    """``y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2)`` (``inverse``: multiply)."""
    norm = F.conv2d(x**2, gamma.reshape(*gamma.shape, 1, 1), beta)
    return x * (torch.sqrt(norm) if inverse else torch.rsqrt(norm))


# --------------------------------------------------------------------------- CAwF blocks
class BlockKeys:
    """What each of a CAwF adapter's tensors means, and the key it is stored under.

    The keys (``a1_cb``, ``s0_bc``, ...) are the 0.1 file format and never change; this is
    the one place that spells them. In the files they sit under ``PREFIX`` (the attribute
    of :class:`nicodec.network.Adapter` that holds them), so ``a0_cb`` is stored as
    ``p.a0_cb`` (and ``q<Q>.p.a0_cb`` in a package). ``b`` is base and ``c`` custom;
    a block ``xy`` is read "x from y" for convolutions (rows from columns).
    """

    PREFIX = "p."

    @staticmethod
    def custom_filters(i: int) -> str:
        """Analysis layer i: the K new filters, (K, in, 5, 5), reading every input."""
        return f"a{i}_cb"

    @staticmethod
    def custom_bias(i: int) -> str:
        """Analysis layer i: the K new filters' biases."""
        return f"a{i}_cbias"

    @staticmethod
    def base_from_custom(i: int) -> str:
        """Analysis layer i > 0: the base filters' taps on the K custom inputs, (N, K, 5, 5)."""
        return f"a{i}_bc"

    @staticmethod
    def synthesis_from_custom(i: int) -> str:
        """Synthesis layer i: the K custom inputs feeding every output, (K, out, 5, 5)."""
        return f"s{i}_cb"

    @staticmethod
    def synthesis_custom_from_base(i: int) -> str:
        """Synthesis layer i (not the last): base inputs feeding the K custom outputs,
        (N, K, 5, 5)."""
        return f"s{i}_bc"

    @staticmethod
    def synthesis_custom_bias(i: int) -> str:
        """Synthesis layer i (not the last): the K custom outputs' biases."""
        return f"s{i}_cbias"

    @staticmethod
    def gdn_custom_beta(gdn: str, i: int) -> str:
        """(I)GDN i (``gdn``: "gdn" or "igdn"): the custom channels' beta, reparametrized."""
        return f"{gdn}{i}_beta"

    @staticmethod
    def gdn_custom_gamma(gdn: str, i: int) -> str:
        """(I)GDN i: the custom channels' gamma rows over all channels, (K, N + K)."""
        return f"{gdn}{i}_gamma_c"

    @staticmethod
    def gdn_base_from_custom(gdn: str, i: int) -> str:
        """(I)GDN i: the base channels' gamma couplings to the custom ones, (N, K)."""
        return f"{gdn}{i}_gamma_bc"


def wide_conv(i: int, base_w: torch.Tensor, base_b: torch.Tensor, cb: torch.Tensor,
              cbias: torch.Tensor, bc: torch.Tensor | None):
    """Analysis layer i widened by K custom filters: weight ``[[W, W_bc], [W_cb]]`` (rows:
    outputs, base then custom; columns: inputs), bias ``[b, b_c]``. Layer 0 has no custom
    inputs (``bc`` is None)."""
    top = base_w if bc is None else torch.cat([base_w, bc], 1)
    return torch.cat([top, cb], 0), torch.cat([base_b, cbias])


def wide_deconv(n: int, last: bool, base_w: torch.Tensor, base_b: torch.Tensor,
                cb: torch.Tensor, bc: torch.Tensor | None, cbias: torch.Tensor | None):
    """Synthesis layer widened by K custom inputs (and, except the last, K custom outputs).
    A transposed convolution's weight is (in, out, kh, kw): custom inputs ``cb`` feed every
    output; ``bc`` maps base inputs to custom outputs."""
    if last:
        return torch.cat([base_w, cb], 0), base_b
    left = torch.cat([base_w, cb[:, :n]], 0)
    right = torch.cat([bc, cb[:, n:]], 0)
    return torch.cat([left, right], 1), torch.cat([base_b, cbias])


def wide_gdn(beta_b: torch.Tensor, gamma_b: torch.Tensor, beta_c: torch.Tensor,
             gamma_bc: torch.Tensor, gamma_c: torch.Tensor):
    """Effective (beta, gamma) of a widened GDN: base block, base<-custom couplings
    ``gamma_bc``, custom rows ``gamma_c`` (all already reparametrized)."""
    top = torch.cat([gamma_b, gamma_bc], 1)
    return torch.cat([beta_b, beta_c]), torch.cat([top, gamma_c], 0)


# --------------------------------------------------------------------------- the network
@dataclass
class Layer:
    """One step of a transform: ``conv``/``deconv`` (weight, bias), ``gdn``/``igdn``
    (beta, gamma, effective) or ``affine`` (alpha, beta)."""

    kind: str
    a: torch.Tensor
    b: torch.Tensor

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "conv":
            return F.conv2d(x, self.a, self.b, STRIDE, KERNEL // 2)
        if self.kind == "deconv":
            return F.conv_transpose2d(x, self.a, self.b, STRIDE, KERNEL // 2, STRIDE - 1)
        if self.kind == "affine":
            return x * self.a[:, None, None] + self.b[:, None, None]
        return gdn(x, self.b, self.a, inverse=self.kind == "igdn")


class FactorizedDensity:
    """The factorized prior's density per latent channel (Ballé et al. 2018, appendix 6.1),
    from the trained ``entropy_bottleneck.*`` tensors: the cumulative
    ``c(v) = sigmoid(f_K o ... o f_0(v))`` with ``f_k(x) = H_k x + b_k`` (``H_k`` =
    softplus(matrices.k)) and, except the last, ``x + tanh(a_k) * tanh(x)``. The frozen
    tables were built from it; the encoder uses it to differentiate the rate when it
    searches for better latents (:mod:`nicodec.effort`)."""

    def __init__(self, matrices: list, biases: list, factors: list):
        self.matrices = [F.softplus(m) for m in matrices]  # (C, out, in)
        self.biases, self.factors = biases, [torch.tanh(f) for f in factors]

    @classmethod
    def from_tensors(cls, t: dict, prefix: str = "entropy_bottleneck.") -> "FactorizedDensity | None":
        if f"{prefix}matrices.0" not in t:
            return None
        n = sum(1 for k in t if k.startswith(f"{prefix}matrices."))
        return cls([t[f"{prefix}matrices.{i}"] for i in range(n)],
                   [t[f"{prefix}biases.{i}"] for i in range(n)],
                   [t[f"{prefix}factors.{i}"] for i in range(n - 1)])

    def to(self, device: str) -> "FactorizedDensity":
        out = FactorizedDensity.__new__(FactorizedDensity)
        out.matrices = [m.to(device) for m in self.matrices]
        out.biases = [b.to(device) for b in self.biases]
        out.factors = [f.to(device) for f in self.factors]
        return out

    def _logits_cumulative(self, v: torch.Tensor) -> torch.Tensor:
        """v: (C, 1, n) -> logits of c(v), (C, 1, n)."""
        for i, (m, b) in enumerate(zip(self.matrices, self.biases)):
            v = torch.matmul(m, v) + b
            if i < len(self.factors):
                v = v + self.factors[i] * torch.tanh(v)
        return v

    def bits(self, y_hat: torch.Tensor) -> torch.Tensor:
        """-log2 P(y_hat) per element of (1, C, h, w) values on the integer grid around
        the medians: ``P = c(y_hat + 1/2) - c(y_hat - 1/2)``, differentiable in y_hat."""
        _, c, h, w = y_hat.shape
        v = y_hat.reshape(c, 1, h * w)
        lower, upper = self._logits_cumulative(v - 0.5), self._logits_cumulative(v + 0.5)
        sign = -torch.sign(lower + upper).detach()  # evaluate in the far tail's stable side
        p = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        return -torch.log2(p.clamp_min(1e-9)).reshape(1, c, h, w)


class FrozenNet:
    """Analysis and synthesis of one codec version, as lists of :class:`Layer`, and the
    latent density it was trained with (None for networks without one)."""

    def __init__(self, analysis: list[Layer], synthesis: list[Layer], latent_channels: int,
                 density: FactorizedDensity | None = None):
        self.analysis_layers, self.synthesis_layers = analysis, synthesis
        self.latent_channels = latent_channels
        self.density = density

    def to(self, device: str) -> "FrozenNet":
        move = lambda layers: [Layer(l.kind, l.a.to(device), l.b.to(device))  # noqa: E731
                               for l in layers]
        return FrozenNet(move(self.analysis_layers), move(self.synthesis_layers),
                         self.latent_channels,
                         self.density.to(device) if self.density else None)

    def eval(self) -> "FrozenNet":
        return self

    @torch.no_grad()
    def analysis(self, x: torch.Tensor) -> torch.Tensor:
        """Image (B, 3, H, W) in [0, 1] -> unquantized latent y (B, C, H/16, W/16)."""
        for layer in self.analysis_layers:
            x = layer(x)
        return x

    @torch.no_grad()
    def synthesis(self, y_hat: torch.Tensor) -> torch.Tensor:
        """Quantized latent (B, C, h, w) -> reconstruction (B, 3, 16h, 16w), unclipped."""
        return self.synthesis_graph(y_hat)

    def synthesis_graph(self, y_hat: torch.Tensor) -> torch.Tensor:
        """:meth:`synthesis`, recording the autograd graph (the same operations, so the
        same values)."""
        for layer in self.synthesis_layers:
            y_hat = layer(y_hat)
        return y_hat

    # ----------------------------------------------------------------------- builders
    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor]) -> "FrozenNet":
        """A base, selective or naive codec from its file's tensors (``g_a.*``, ``g_s.*``,
        and ``a_affine.*``/``s_affine.*`` for selective codecs)."""
        layers = {}
        for side, conv_kind, gdn_kind in (("a", "conv", "gdn"), ("s", "deconv", "igdn")):
            seq, out = f"g_{side}", []
            for j, i in enumerate(CONV_INDICES):
                out.append(Layer(conv_kind, t[f"{seq}.{i}.weight"], t[f"{seq}.{i}.bias"]))
                if f"{side}_affine.{j}.alpha" in t:
                    out.append(Layer("affine", t[f"{side}_affine.{j}.alpha"],
                                     t[f"{side}_affine.{j}.beta"]))
                if i + 1 in GDN_INDICES:
                    beta, gamma = base_gdn(t, f"{seq}.{i + 1}")
                    out.append(Layer(gdn_kind, gamma, beta))
            layers[side] = out
        return cls(layers["a"], layers["s"], t["g_a.6.weight"].shape[0],
                   FactorizedDensity.from_tensors(t))

    @classmethod
    def adapted(cls, base: dict[str, torch.Tensor], p: dict[str, torch.Tensor]) -> "FrozenNet":
        """Base tensors + a CAwF adapter's (:class:`BlockKeys` under ``p.``, optional
        ``a_affine.*`` / ``s_affine.*``): the (N + K)-filter network, its wide weights
        built once."""
        n = base["g_a.0.weight"].shape[0]
        K = BlockKeys

        def block(key: str) -> torch.Tensor | None:
            return p.get(K.PREFIX + key)

        layers = {}
        for side, conv_kind, gdn_kind, gdn_name in (("a", "conv", "gdn", "gdn"),
                                                    ("s", "deconv", "igdn", "igdn")):
            seq, out = f"g_{side}", []
            for j, i in enumerate(CONV_INDICES):
                w, b = base[f"{seq}.{i}.weight"], base[f"{seq}.{i}.bias"]
                if side == "a":
                    w, b = wide_conv(j, w, b, block(K.custom_filters(j)),
                                     block(K.custom_bias(j)), block(K.base_from_custom(j)))
                else:
                    last = j == N_LAYERS - 1
                    w, b = wide_deconv(n, last, w, b, block(K.synthesis_from_custom(j)),
                                       block(K.synthesis_custom_from_base(j)),
                                       block(K.synthesis_custom_bias(j)))
                out.append(Layer(conv_kind, w, b))
                if f"{side}_affine.{j}.alpha" in p:
                    out.append(Layer("affine", p[f"{side}_affine.{j}.alpha"],
                                     p[f"{side}_affine.{j}.beta"]))
                if i + 1 in GDN_INDICES:
                    g = f"{seq}.{i + 1}"
                    beta_b, gamma_b = base_gdn(base, g)
                    beta, gamma = wide_gdn(
                        beta_b, gamma_b,
                        reparam(base, f"{g}.beta_reparam", block(K.gdn_custom_beta(gdn_name, j))),
                        reparam(base, f"{g}.gamma_reparam",
                                block(K.gdn_base_from_custom(gdn_name, j))),
                        reparam(base, f"{g}.gamma_reparam",
                                block(K.gdn_custom_gamma(gdn_name, j))))
                    out.append(Layer(gdn_kind, gamma, beta))
            layers[side] = out
        return cls(layers["a"], layers["s"], n + block(K.custom_filters(0)).shape[0],
                   FactorizedDensity.from_tensors(p))


def reparam(t: dict[str, torch.Tensor], prefix: str, raw: torch.Tensor) -> torch.Tensor:
    """``raw`` through the non-negative reparametrization stored under ``prefix``."""
    return nonnegative(raw, t[f"{prefix}.lower_bound.bound"], t[f"{prefix}.pedestal"])


def base_gdn(t: dict[str, torch.Tensor], prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Effective (beta, gamma) of the GDN stored under ``prefix``."""
    return (reparam(t, f"{prefix}.beta_reparam", t[f"{prefix}.beta"]),
            reparam(t, f"{prefix}.gamma_reparam", t[f"{prefix}.gamma"]))
