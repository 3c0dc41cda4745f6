"""The factorized-prior autoencoder (Ballé et al. 2018) and its CAwF widening.

Base codec (paper, Appendix A and Table 3), N = M = 64:

    g_a: conv(3->N) GDN conv(N->N) GDN conv(N->N) GDN conv(N->M)     (all 5x5, stride 2)
    g_s: deconv(M->N) IGDN deconv(N->N) IGDN deconv(N->N) IGDN deconv(N->3)
    entropy model: one factorized density per latent channel (EntropyBottleneck)

An :class:`Adapter` (CAwF, paper section 3.2) widens every conv layer by K custom filters.
The wide layer's weight is the block matrix

    [ W_base   W_bc ]      rows: output channels (base 0..N-1, custom N..N+K-1)
    [ W_cb     W_cc ]      cols: input channels

where ``W_base`` (and the base biases, the base GDN block ``gamma[:N, :N]``, ``beta[:N]``) are
the frozen base parameters and everything else is held by the adapter. The adapted latent has
M + K channels and its own entropy model. Without an adapter the network runs the plain base
modules, so it computes exactly the base function, bit for bit.

Tensors: images ``x`` are (B, 3, H, W) floats in [0, 1]; latents ``y`` are (B, C, H/16, W/16).
"""

from __future__ import annotations

import math

import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

with warnings.catch_warnings():  # CompressAI 1.2 scripts a helper with torch.jit.script,
    # which torch deprecates; the one known warning, silenced where it is raised
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*is deprecated",
                            category=FutureWarning)
    from compressai.entropy_models import EntropyBottleneck
    from compressai.layers import GDN

from nicodec import hyperprior, inference
from nicodec.inference import BlockKeys as B
from nicodec.inference import EB_FILTERS, KERNEL, N_LAYERS, STRIDE

N_FILTERS = 64


def conv(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, KERNEL, stride=STRIDE, padding=KERNEL // 2)


def deconv(cin: int, cout: int) -> nn.ConvTranspose2d:
    return Deconv(cin, cout, KERNEL, stride=STRIDE, padding=KERNEL // 2,
                  output_padding=STRIDE - 1)


class Deconv(nn.ConvTranspose2d):
    """``deconv``'s layer: ``nn.ConvTranspose2d`` (same parameters, same state dict) that
    trains through :func:`upconv`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upconv(x, self.weight, self.bias, self.training)


def upconv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
           training: bool) -> torch.Tensor:
    """The synthesis' stride-2, 5x5 transposed convolution of ``x`` (B, Cin, h, w) by
    ``weight`` (Cin, Cout, 5, 5): (B, Cout, 2h, 2w).

    It is ``F.conv_transpose2d``, except in a training pass on the CPU under autocast (the
    fast path), where oneDNN's bf16 transposed convolutions are slower than plain ones over
    a training step (forward and both gradients, batch 8, measured on one core of an AMD
    EPYC with AVX512-BF16; not measured on Intel's AMX): there the
    same function is computed by one convolution per output phase
    (:func:`_upconv_phases`; 64 -> 64 channels at 32x32: 19.6 ms instead of 23.1) or, for
    the few output channels of the last layer, by all phases at once and a pixel shuffle
    (:func:`_upconv_subpixel`; 64 -> 3 at 64x64: 7.1 ms instead of 9.2). Below 16x16 the
    transposed convolution is the faster. Results agree to float rounding
    (tests/test_network.py); decoding never runs this (it uses ``nicodec.inference``).
    """
    if training and x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        if weight.shape[1] <= 4:
            return _upconv_subpixel(x, weight, bias)
        if x.shape[-2] * x.shape[-1] >= 256:
            return _upconv_phases(x, weight, bias)
    return F.conv_transpose2d(x, weight, bias, STRIDE, KERNEL // 2, STRIDE - 1)


def _phase_taps(a: int) -> list[int]:
    """Kernel taps (of 0..4) feeding output phase ``a`` at input offsets -1, 0, +1:
    tap ``a + 4 - 2t`` for offset ``t - 1``; tap 5 does not exist (a zero)."""
    return [a + 4 - 2 * t for t in range(3)]


def _upconv_phases(x, weight, bias):
    """Four convolutions, one per output phase (a, b), with only that phase's taps."""
    outs = []
    for a in range(STRIDE):
        for b in range(STRIDE):
            ta = [t for t in range(3) if _phase_taps(a)[t] < KERNEL]
            tb = [t for t in range(3) if _phase_taps(b)[t] < KERNEL]
            rows = [_phase_taps(a)[t] for t in ta]
            cols = [_phase_taps(b)[t] for t in tb]
            k = weight[:, :, rows][:, :, :, cols]
            # correlate: input offset t - 1 for tap index t; pad what the taps reach
            pad = (1 - tb[0], tb[-1] - 1, 1 - ta[0], ta[-1] - 1)
            outs.append(F.conv2d(F.pad(x, pad), k.transpose(0, 1)))
    y = torch.stack(outs, 2)  # (B, Cout, 4 phases, h, w)
    n, c, _, h, w = y.shape
    y = y.view(n, c, STRIDE, STRIDE, h, w).permute(0, 1, 4, 2, 5, 3)
    return y.reshape(n, c, STRIDE * h, STRIDE * w) + bias.view(1, -1, 1, 1)


def _upconv_subpixel(x, weight, bias):
    """One 3x3 convolution to 4 Cout channels (every phase; tap 5 a zero), pixel-shuffled."""
    cin, cout = weight.shape[:2]
    taps = torch.tensor([_phase_taps(a) for a in range(STRIDE)], device=weight.device)
    k = F.pad(weight, (0, 1, 0, 1))[:, :, taps][:, :, :, :, taps]  # (Cin, Cout, a, t, b, u)
    k = k.permute(1, 2, 4, 0, 3, 5).reshape(cout * STRIDE ** 2, cin, 3, 3)
    return F.pixel_shuffle(F.conv2d(x, k, bias.repeat_interleave(STRIDE ** 2), padding=1),
                           STRIDE)


def entropy_bottleneck(channels: int) -> EntropyBottleneck:
    return EntropyBottleneck(channels, filters=EB_FILTERS)


class ChannelAffine(nn.Module):
    """Per-channel scale and bias ``z~ = alpha * z + beta`` (selective fine tuning, 2.2;
    also the optional part of a CAwF :class:`Adapter`).

    Initialised to the identity, so inserting it does not change the function.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.alpha[:, None, None] + self.beta[:, None, None]


def _autocast(x: torch.Tensor, dtype: torch.dtype | None):
    """Autocast on ``x``'s device to ``dtype``; a no-op context for ``None``."""
    return torch.autocast(x.device.type, dtype=dtype, enabled=dtype is not None)


class TransformCoder(nn.Module):
    """Training interface shared by every codec network: subclasses provide ``analysis``,
    ``synthesis`` and ``entropy_bottleneck``."""

    def forward(self, x: torch.Tensor, round_for_synthesis: bool = False,
                transform_dtype: torch.dtype | None = None) -> dict:
        """Training pass: reconstruction and likelihoods under the uniform-noise proxy.

        ``transform_dtype`` (e.g. ``torch.bfloat16``): run the analysis and synthesis
        transforms under autocast in that precision (the fast training path); the latents,
        the entropy model's likelihoods and ``x_hat`` stay float32, and so do the weights.

        ``round_for_synthesis``: the synthesis gets the latents rounded as at test time,
        ``round(y - median) + median``, with a straight-through gradient, while the rate
        keeps the noise proxy ("mixed quantization", Minnen & Singh 2020). Noise is
        independent from one position to the next; rounding error is not, and on a
        near-constant channel it is one offset over the whole image, which the noise
        proxy never shows the decoder.
        """
        with _autocast(x, transform_dtype):
            y = self.analysis(x)
        y = y.float()
        y_tilde, likelihoods = self.entropy_bottleneck(y)
        if round_for_synthesis:
            medians = self.entropy_bottleneck._get_medians().detach().reshape(1, -1, 1, 1)
            y_tilde = y + (torch.round(y - medians) + medians - y).detach()
        with _autocast(x, transform_dtype):
            x_hat = self.synthesis(y_tilde)
        return {"x_hat": x_hat.float(), "likelihoods": likelihoods}

    def aux_loss(self) -> torch.Tensor:
        """Loss that fits the entropy model's quantiles (CompressAI's aux loss)."""
        return self.entropy_bottleneck.loss()


class FactorizedPrior(TransformCoder):
    """The base codec: analysis ``g_a``, synthesis ``g_s``, entropy model ``entropy_bottleneck``.

    ``affine=True`` adds a :class:`ChannelAffine` after every convolution (the selective
    fine-tuning architecture); the base models have none.
    """

    def __init__(self, n: int = N_FILTERS, affine: bool = False):
        super().__init__()
        self.n = n
        self.affine = affine
        a_layers: list[nn.Module] = []
        s_layers: list[nn.Module] = []
        for i in range(N_LAYERS):
            a_layers.append(conv(3 if i == 0 else n, n))
            if i < N_LAYERS - 1:
                a_layers.append(GDN(n))
        for i in range(N_LAYERS):
            last = i == N_LAYERS - 1
            s_layers.append(deconv(n, 3 if last else n))
            if not last:
                s_layers.append(GDN(n, inverse=True))
        self.g_a = nn.Sequential(*a_layers)
        self.g_s = nn.Sequential(*s_layers)
        if affine:  # same g_a/g_s keys as the base, so base weights load unchanged
            self.a_affine = nn.ModuleList(ChannelAffine(n) for _ in range(N_LAYERS))
            self.s_affine = nn.ModuleList(ChannelAffine(3 if i == N_LAYERS - 1 else n)
                                          for i in range(N_LAYERS))
        self.entropy_bottleneck = entropy_bottleneck(n)

    @property
    def latent_channels(self) -> int:
        return self.n

    def synthesis_parameters(self) -> list[nn.Parameter]:
        """The parameters of the synthesis ``g_s`` (with its channel affines, if any)."""
        modules = [self.g_s] + ([self.s_affine] if self.affine else [])
        return [p for m in modules for p in m.parameters()]

    def analysis(self, x: torch.Tensor) -> torch.Tensor:
        """Image (B, 3, H, W) in [0, 1] -> unquantized latent y (B, M, H/16, W/16)."""
        return self._run(self.g_a, self.a_affine, x) if self.affine else self.g_a(x)

    def synthesis(self, y_hat: torch.Tensor) -> torch.Tensor:
        """Quantized latent (B, M, h, w) -> reconstruction (B, 3, 16h, 16w), unclipped."""
        return self._run(self.g_s, self.s_affine, y_hat) if self.affine else self.g_s(y_hat)

    @staticmethod
    def _run(seq: nn.Sequential, affines: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
        """Apply ``seq`` with ``z~ = alpha z + beta`` after each convolution."""
        i = 0
        for m in seq:
            x = m(x)
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                x = affines[i](x)
                i += 1
        return x



def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _gdn_eff(gdn: GDN) -> tuple[torch.Tensor, torch.Tensor]:
    """Effective (beta, gamma) of a CompressAI GDN, after its reparametrization."""
    return gdn.beta_reparam(gdn.beta), gdn.gamma_reparam(gdn.gamma)


class Adapter(nn.Module):
    """CAwF custom parameters for one base codec: K extra filters per conv layer.

    The blocks live in ``p`` under the file format's names; :class:`BlockKeys` says what
    each means. With ``entropy_bottleneck.*`` they are the adapter file's tensor keys.
    Initialisation makes the adapted codec start as the base codec: the weights from
    custom to base channels and the base-custom GDN couplings are zero, the entropy model
    of the base channels starts as a copy of the base one, and the custom latents start
    small, under the narrowest base density.

    ``channel_affine`` (not in the paper): also a per-channel scale and bias
    ``z~ = alpha z + beta`` after every widened convolution (``a_affine.*``,
    ``s_affine.*``; 1,126 parameters for K = 16), starting as the identity. It lets the
    adapter rescale the frozen base channels, as selective fine tuning does; the base
    parameters stay frozen all the same.
    """

    def __init__(self, base: FactorizedPrior, k: int = 16, channel_affine: bool = False):
        super().__init__()
        if base.affine:
            raise ValueError("CAwF adapters attach to a base (non-affine) codec")
        n = base.n
        self.k = k
        self.n = n
        p = nn.ParameterDict()
        convs = [m for m in base.g_a if isinstance(m, nn.Conv2d)]
        deconvs = [m for m in base.g_s if isinstance(m, nn.ConvTranspose2d)]
        for i, c in enumerate(convs):
            cin = c.in_channels  # 3 for the first layer
            extra_in = 0 if i == 0 else k
            # Conv2d weight: (out, in, kh, kw)
            scale = 0.1 if i == N_LAYERS - 1 else 1.0  # small custom latents: cheap at start
            p[B.custom_filters(i)] = nn.Parameter(
                _kaiming((k, cin + extra_in, KERNEL, KERNEL)) * scale)
            p[B.custom_bias(i)] = nn.Parameter(torch.zeros(k))
            if extra_in:
                p[B.base_from_custom(i)] = nn.Parameter(torch.zeros(n, k, KERNEL, KERNEL))
        for i, d in enumerate(deconvs):
            cout = d.out_channels  # 3 for the last layer
            extra_out = 0 if i == N_LAYERS - 1 else k
            # ConvTranspose2d weight: (in, out, kh, kw); custom inputs feed every output.
            p[B.synthesis_from_custom(i)] = nn.Parameter(
                torch.zeros(k, cout + extra_out, KERNEL, KERNEL))
            if extra_out:
                p[B.synthesis_custom_from_base(i)] = nn.Parameter(
                    _kaiming((n, k, KERNEL, KERNEL)) * 0.1)
                p[B.synthesis_custom_bias(i)] = nn.Parameter(torch.zeros(k))
        for name, seq in (("gdn", base.g_a), ("igdn", base.g_s)):
            for i, g in enumerate(m for m in seq if isinstance(m, GDN)):
                # stored in GDN's reparametrized space, like the base GDN parameters
                p[B.gdn_custom_beta(name, i)] = nn.Parameter(g.beta_reparam.init(torch.ones(k)))
                p[B.gdn_custom_gamma(name, i)] = nn.Parameter(
                    g.gamma_reparam.init(torch.cat([torch.zeros(k, n), 0.1 * torch.eye(k)], 1)))
                p[B.gdn_base_from_custom(name, i)] = nn.Parameter(
                    g.gamma_reparam.init(torch.zeros(n, k)))
        self.p = p  # the file format's "p." prefix (BlockKeys.PREFIX)
        self.entropy_bottleneck = entropy_bottleneck(n + k)
        with torch.no_grad():
            # Base channels start from the base density model; custom channels from the
            # narrowest base density, so their (near-zero) initial latents cost few bits.
            src = base.entropy_bottleneck.state_dict()
            q = base.entropy_bottleneck.quantiles
            narrow = int(torch.argmin(q[:, 0, 2] - q[:, 0, 0]))
            for name, t in self.entropy_bottleneck.state_dict().items():
                if name in src and t.dim() and t.shape[0] == n + k:
                    t[:n] = src[name]
                    t[n:] = src[name][narrow]
        # Created last: they draw no random numbers, so the other parameters start the same
        # with or without them.
        self.channel_affine = channel_affine
        if channel_affine:
            self.a_affine = nn.ModuleList(ChannelAffine(n + k) for _ in range(N_LAYERS))
            self.s_affine = nn.ModuleList(ChannelAffine(3 if i == N_LAYERS - 1 else n + k)
                                          for i in range(N_LAYERS))

    def grow_from(self, weights: dict[str, torch.Tensor], k_old: int) -> None:
        """Load a narrower adapter's ``weights`` (``k_old`` < K custom filters) so that this
        one computes what it computed, its K - k_old new filters added beside (Net2Net's
        function-preserving widening, Chen et al. 2016).

        Channels are ordered [base N, custom K] everywhere, so every stored tensor of the
        old adapter is the leading slice of the new one's; the rest keeps this adapter's
        initialisation, which already gives the new custom channels no path into the base
        channels (zero ``base_from_custom``, ``synthesis_from_custom``, GDN couplings). One
        path remains: the old custom filters of analysis layers 1-3 reading the new custom
        channels, set to zero here. The distortion is then exactly the old adapter's; the
        rate grows by what the new latent channels, small at the start and under the
        narrowest base density, cost.
        """
        if not 0 < k_old < self.k:
            raise ValueError(f"grow_from: {k_old} custom filters is not fewer than {self.k}")
        own = {**dict(self.named_parameters()), **dict(self.named_buffers())}
        with torch.no_grad():
            for key, old in weights.items():
                if key not in own:
                    raise KeyError(f"grow_from: unexpected tensor {key}")
                new = own[key]
                grown = self.k - k_old  # each dimension is the same or K-dependent
                if new.dim() != old.dim() or any(n - o not in (0, grown)
                                                 for o, n in zip(old.shape, new.shape)):
                    raise ValueError(f"grow_from: {key} {tuple(old.shape)} does not fit "
                                     f"{tuple(new.shape)}")
                new[tuple(slice(0, s) for s in old.shape)] = old.to(new.dtype)
            for i in range(1, N_LAYERS):
                self.p[B.custom_filters(i)][:k_old, self.n + k_old:] = 0

    def synthesis_parameters(self) -> list[nn.Parameter]:
        """The adapter's parameters that only the synthesis uses: its synthesis blocks,
        inverse-GDN blocks and synthesis channel affines."""
        keys = [key for i in range(N_LAYERS)
                for key in (B.synthesis_from_custom(i), B.synthesis_custom_from_base(i),
                            B.synthesis_custom_bias(i))]
        keys += [key for j in range(N_LAYERS - 1)
                 for key in (B.gdn_custom_beta("igdn", j), B.gdn_custom_gamma("igdn", j),
                             B.gdn_base_from_custom("igdn", j))]
        params = [self.p[key] for key in keys if key in self.p]
        return params + (list(self.s_affine.parameters()) if self.channel_affine else [])

    def affine(self, side: str, i: int, z: torch.Tensor) -> torch.Tensor:
        """Layer i's output ``z`` through its channel affine (``side``: "a" or "s"), if any."""
        if not self.channel_affine:
            return z
        return (self.a_affine if side == "a" else self.s_affine)[i](z)

    def wide_conv_weight(self, i: int, base_w: torch.Tensor, base_b: torch.Tensor):
        block = self.block
        return inference.wide_conv(i, base_w, base_b, block(B.custom_filters(i)),
                                   block(B.custom_bias(i)), block(B.base_from_custom(i)))

    def wide_deconv_weight(self, i: int, base_w: torch.Tensor, base_b: torch.Tensor):
        block = self.block
        return inference.wide_deconv(self.n, i == N_LAYERS - 1, base_w, base_b,
                                     block(B.synthesis_from_custom(i)),
                                     block(B.synthesis_custom_from_base(i)),
                                     block(B.synthesis_custom_bias(i)))

    def wide_gdn(self, name: str, i: int, g: GDN):
        beta_b, gamma_b = _gdn_eff(g)
        return inference.wide_gdn(beta_b, gamma_b,
                                  g.beta_reparam(self.block(B.gdn_custom_beta(name, i))),
                                  g.gamma_reparam(self.block(B.gdn_base_from_custom(name, i))),
                                  g.gamma_reparam(self.block(B.gdn_custom_gamma(name, i))))

    def block(self, key: str) -> torch.Tensor | None:
        """The adapter tensor stored under ``key`` (a :class:`BlockKeys` name), or None."""
        return self.p[key] if key in self.p else None


def _kaiming(shape) -> torch.Tensor:
    fan_in = shape[1] * shape[2] * shape[3]
    return torch.randn(shape) * math.sqrt(1.0 / fan_in)


class AdaptedCodec(TransformCoder):
    """Base codec + CAwF adapter: the paper's (N + K)-filter network.

    The base module is frozen and shared; only ``adapter`` parameters train.
    """

    def __init__(self, base: FactorizedPrior, adapter: Adapter):
        super().__init__()
        self.base = base
        self.adapter = adapter
        for q in self.base.parameters():
            q.requires_grad_(False)

    @property
    def entropy_bottleneck(self) -> EntropyBottleneck:
        return self.adapter.entropy_bottleneck

    @property
    def latent_channels(self) -> int:
        return self.base.n + self.adapter.k

    def synthesis_parameters(self) -> list[nn.Parameter]:
        """Every parameter of the wide synthesis (the base's stay frozen all the same)."""
        return self.base.synthesis_parameters() + self.adapter.synthesis_parameters()

    def analysis(self, x: torch.Tensor) -> torch.Tensor:
        ad, i, j = self.adapter, 0, 0
        for m in self.base.g_a:
            if isinstance(m, nn.Conv2d):
                w, b = ad.wide_conv_weight(i, m.weight, m.bias)
                x = ad.affine("a", i, F.conv2d(x, w, b, stride=STRIDE, padding=KERNEL // 2))
                i += 1
            else:
                beta, gamma = ad.wide_gdn("gdn", j, m)
                x = inference.gdn(x, beta, gamma, inverse=False)
                j += 1
        return x

    def synthesis(self, y_hat: torch.Tensor) -> torch.Tensor:
        ad, i, j, x = self.adapter, 0, 0, y_hat
        for m in self.base.g_s:
            if isinstance(m, nn.ConvTranspose2d):
                w, b = ad.wide_deconv_weight(i, m.weight, m.bias)
                x = ad.affine("s", i, upconv(x, w, b, self.training))
                i += 1
            else:
                beta, gamma = ad.wide_gdn("igdn", j, m)
                x = inference.gdn(x, beta, gamma, inverse=True)
                j += 1
        return x


@torch.no_grad()
def widen(base: FactorizedPrior, k: int = 16, seed: int = 0) -> FactorizedPrior:
    """A plain (N + K)-filter :class:`FactorizedPrior` that computes what the adapted codec
    ``AdaptedCodec(base, Adapter(base, k))`` computes at initialisation.

    The experiments' reference model (paper, Table 2: 80 filters trained jointly on source
    and target) starts from it, so that every parameter, base block included, can train.
    """
    torch.manual_seed(seed)
    adapter = Adapter(base, k)
    wide = FactorizedPrior(base.n + k)
    pairs = ((base.g_a, wide.g_a, "gdn", nn.Conv2d, adapter.wide_conv_weight),
             (base.g_s, wide.g_s, "igdn", nn.ConvTranspose2d, adapter.wide_deconv_weight))
    for narrow_seq, wide_seq, gdn_name, conv_type, weight_fn in pairs:
        i = j = 0
        for m, w in zip(narrow_seq, wide_seq):
            if isinstance(m, conv_type):
                weight, bias = weight_fn(i, m.weight, m.bias)
                w.weight.copy_(weight)
                w.bias.copy_(bias)
                i += 1
            else:
                beta, gamma = adapter.wide_gdn(gdn_name, j, m)
                w.beta.copy_(w.beta_reparam.init(beta))
                w.gamma.copy_(w.gamma_reparam.init(gamma))
                j += 1
    wide.entropy_bottleneck.load_state_dict(adapter.entropy_bottleneck.state_dict())
    return wide


def gaussian_likelihood(q: torch.Tensor, mu: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """P(q) under N(mu, hyperprior.sigma(s)) integrated over q's unit bin (training's rate)."""
    d = torch.distributions.Normal(mu, hyperprior.sigma(s))
    return (d.cdf(q + 0.5) - d.cdf(q - 0.5)).clamp_min(1e-9)


class HyperPrior(nn.Module):
    """A mean-scale hyperprior's training network (:mod:`nicodec.hyperprior`): h_a, h_s and
    z's factorized prior over a codec's integer symbols q (B, m, h, w).

    ``m``: channels of the codec's latents (64 for a base, 64 + K for a CAwF adapter).
    ``h_s`` uses LeakyReLU of slope 2**-leak_bits (0: ReLU), which
    :class:`~nicodec.hyperprior.IntegerSynthesis` computes exactly.
    """

    def __init__(self, m: int = N_FILTERS, n: int = hyperprior.Z_CHANNELS,
                 leak_bits: int = hyperprior.LEAK_BITS):
        super().__init__()
        self.m, self.n, self.leak_bits = m, n, leak_bits
        self.h_a = hyperprior.h_a_layers(m, n)
        self.h_s = hyperprior.h_s_layers(m, n, leak_bits)
        self.z_prior = entropy_bottleneck(n)

    def state(self) -> dict[str, torch.Tensor]:
        """The trained parameters (CompressAI's derived CDF buffers left out)."""
        return {k: v.detach().contiguous() for k, v in self.state_dict().items()
                if not k.startswith("z_prior._")}

    def load(self, state: dict[str, torch.Tensor]) -> "HyperPrior":
        """Load :meth:`state` (a file that holds the derived buffers too is accepted)."""
        self.load_state_dict({k: v for k, v in state.items()
                              if not k.startswith("z_prior._")}, strict=False)
        missing = set(self.state()) - set(state)
        if missing:
            raise KeyError(f"hyperprior state lacks {sorted(missing)[:3]}")
        return self

    @classmethod
    def from_tensors(cls, hyper: dict[str, torch.Tensor], m: int | None = None) -> "HyperPrior":
        """A trainable hyperprior from a model file's ``hyper.*`` tensors (h_s from its
        fixed-point integers), for latents of ``m`` channels (default: the file's). A wider
        ``m`` (an adapter's M + K channels over its base's M) keeps what the file's
        hyperprior does for the first channels: the new channels' inputs to h_a start at
        zero and their outputs of h_s at the layer's default initialisation."""
        m_old = hyper["h_s.4.weight"].shape[0] // 2
        m = m_old if m is None else m
        model = cls(m=m, n=hyper["h_s.0.weight"].shape[0],
                    leak_bits=int(hyper["fixed_point"][hyperprior.LAYOUT_LEAK]))
        unit = float(1 << hyperprior.WEIGHT_BITS)
        keep = min(m, m_old)
        with torch.no_grad():
            for i in (2, 4):
                model.h_a[i].load_state_dict({"weight": hyper[f"h_a.{i}.weight"],
                                              "bias": hyper[f"h_a.{i}.bias"]})
            model.h_a[0].bias.copy_(hyper["h_a.0.bias"])
            model.h_a[0].weight.zero_()
            model.h_a[0].weight[:, :keep] = hyper["h_a.0.weight"][:, :keep]
            for i in (0, 2):
                model.h_s[i].weight.copy_(hyper[f"h_s.{i}.weight"].double() / unit)
                model.h_s[i].bias.copy_(hyper[f"h_s.{i}.bias"].double() / unit)
            w, b = hyper["h_s.4.weight"].double() / unit, hyper["h_s.4.bias"].double() / unit
            for half in (0, 1):  # rows: the means, then the scales
                model.h_s[4].weight[half * m:half * m + keep] = w[half * m_old:half * m_old + keep]
                model.h_s[4].bias[half * m:half * m + keep] = b[half * m_old:half * m_old + keep]
            model.z_prior.load_state_dict({k[8:]: v for k, v in hyper.items()
                                           if k.startswith("z_prior.")}, strict=False)
        return model

    def side(self, q: torch.Tensor) -> torch.Tensor:
        """z (B, N, ceil(h/4), ceil(w/4)), unquantized, of symbols q (B, M, h, w)."""
        h, w = q.shape[-2:]
        q = F.pad(q, (0, -w % hyperprior.Z_DOWNSAMPLING, 0, -h % hyperprior.Z_DOWNSAMPLING))
        return self.h_a(q)

    def parameters_of(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mu, s, z's likelihoods) for symbols q (B, M, h, w): the Gaussian's mean and
        scale parameter (B, M, h, w) of every symbol given z = h_a(q), with z under the noise
        proxy (training) or rounded at its medians (eval)."""
        z = self.side(q)
        medians = self.z_prior._get_medians().detach().reshape(1, -1, 1, 1)
        z_tilde, z_lik = self.z_prior(z)
        if not self.training:
            z_tilde = torch.round(z - medians) + medians
            z_lik = _eb_likelihood(self.z_prior, z_tilde)
        mu, s = self.h_s(z_tilde - medians).chunk(2, 1)
        h, w = q.shape[-2:]
        return mu[..., :h, :w], s[..., :h, :w], z_lik.clamp_min(1e-9)

    def forward(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(bits of q given z, bits of z) (:meth:`parameters_of`)."""
        mu, s, z_lik = self.parameters_of(q)
        return -torch.log2(gaussian_likelihood(q, mu, s)).sum(), -torch.log2(z_lik).sum()


class ContextHyperPrior(HyperPrior):
    """A :class:`HyperPrior` whose Gaussians a context model refines from the symbols
    decoded before each element's group (:mod:`nicodec.context`; coder 3)."""

    def __init__(self, m: int = N_FILTERS, n: int = hyperprior.Z_CHANNELS,
                 leak_bits: int = hyperprior.LEAK_BITS):
        from nicodec.context import ContextModel

        super().__init__(m, n, leak_bits)
        self.context = ContextModel(m)

    @classmethod
    def from_tensors(cls, hyper: dict[str, torch.Tensor], m: int | None = None) -> "ContextHyperPrior":
        """A model file's ``hyper.*``: its hyperprior, and its context model if it has one
        (else a new one, which starts as the identity)."""
        from nicodec import context

        model = super().from_tensors(hyper, m)
        ctx = {k[4:]: v for k, v in hyper.items() if k.startswith("ctx.")}
        if ctx:
            model.context.load_state_dict(context.from_tensors(ctx, model.m).state_dict())
        return model

    def parameters_of(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, s, z_lik = super().parameters_of(q)
        mu, s = self.context(q, mu, s)
        return mu, s, z_lik


def _eb_likelihood(model, v: torch.Tensor) -> torch.Tensor:
    """Likelihood (B, C, H, W) of the unit bins centred on ``v`` under a factorized prior."""
    b, c, h, w = v.shape
    lik, _, _ = model._likelihood(v.permute(1, 0, 2, 3).reshape(c, 1, -1))
    return lik.reshape(c, b, h, w).permute(1, 0, 2, 3)


class JointCodec(TransformCoder):
    """A base codec's transforms trained together with the hyperprior that codes their
    symbols (``nicodec train --hyperprior``): the rate is the hyperprior's, so the transforms
    learn latents it predicts well, not latents a factorized prior codes well.

    Symbols are ``round(y - median)`` with the median of ``codec``'s factorized entropy
    model, as every nicodec codec defines them. Training pass, with ``q = y - median``:

    * rate: ``-log2 P(round(q) | z~)`` under the Gaussian of
      :meth:`HyperPrior.parameters_of`, straight-through, plus z's bits. The usual noise
      proxy ``-log2 P(q + u | z~)`` (``rate_on_rounded=False``) overstates what these
      Gaussians code: on generation 7's latents of four test photos it counted 1.67x the
      real bits at q1 and 1.08x at q4 (many symbols have scales near the 0.11 floor, where
      a unit of noise costs bits that an integer does not); the rounded rate counted
      0.98x and 1.00x;
    * synthesis: ``round(q) + median`` with a straight-through gradient when
      ``round_for_synthesis`` (Minnen & Singh 2020), else the noisy latents; h_a reads the
      same rounded symbols as at test time;
    * ``fit_bits``: the factorized prior's bits of the *detached* latents. Its tables are
      still a model file's (and an adapter's starting point), so they keep fitting the
      moving latents, but nothing of them reaches the transforms.
    """

    def __init__(self, codec: FactorizedPrior, hyper: HyperPrior, rate_on_rounded: bool = True):
        super().__init__()
        if codec.affine:
            raise ValueError("joint training takes a plain factorized base")
        self.codec, self.hyper = codec, hyper
        self.rate_on_rounded = rate_on_rounded

    @property
    def entropy_bottleneck(self) -> EntropyBottleneck:
        return self.codec.entropy_bottleneck

    @property
    def latent_channels(self) -> int:
        return self.codec.latent_channels

    def synthesis_parameters(self) -> list[nn.Parameter]:
        return self.codec.synthesis_parameters()

    def analysis(self, x: torch.Tensor) -> torch.Tensor:
        return self.codec.analysis(x)

    def synthesis(self, y_hat: torch.Tensor) -> torch.Tensor:
        return self.codec.synthesis(y_hat)

    def forward(self, x: torch.Tensor, round_for_synthesis: bool = True,
                transform_dtype: torch.dtype | None = None) -> dict:
        with _autocast(x, transform_dtype):
            y = self.analysis(x)
        y = y.float()
        medians = self.entropy_bottleneck._get_medians().detach().reshape(1, -1, 1, 1)
        q = y - medians
        q_round = q + (torch.round(q) - q).detach()
        q_noisy = q + torch.empty_like(q).uniform_(-0.5, 0.5) if self.training else q_round
        mu, s, z_lik = self.hyper.parameters_of(q_round)
        y_lik = gaussian_likelihood(q_round if self.rate_on_rounded else q_noisy, mu, s)
        with _autocast(x, transform_dtype):
            x_hat = self.synthesis((q_round if round_for_synthesis else q_noisy) + medians)
        _, fit_lik = self.entropy_bottleneck(y.detach())
        return {"x_hat": x_hat.float(),
                "likelihoods": torch.cat([y_lik.flatten(), z_lik.flatten()]),
                "fit_bits": -torch.log2(fit_lik).sum()}

    def aux_loss(self) -> torch.Tensor:
        """The quantiles of both factorized priors (y's and z's)."""
        return self.entropy_bottleneck.loss() + self.hyper.z_prior.loss()
