"""The context model (coder 3): its integer nets, the decode order they allow, round trips,
refusals, and a generation that codes with it."""

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from conftest import int_conv3 as conv3
from conftest import object_ints as obj
from conftest import smooth_image, untrained_base
from nicodec import container, context, registry
from nicodec import hyperprior as hp
from nicodec.cli import main
from nicodec.errors import NicodecError
from nicodec.network import ContextHyperPrior, HyperPrior

M = 8  # latent channels of the small models here: 4 slices of 2


def seeded(m: int = M, n: int = 6, seed: int = 0) -> ContextHyperPrior:
    """A hyperprior with a spread of means and scales, and a context model that moves them
    (a new one starts as the identity)."""
    torch.manual_seed(seed)
    model = ContextHyperPrior(m=m, n=n)
    with torch.no_grad():
        model.h_s[4].bias[:m].uniform_(-3, 3)
        model.h_s[4].bias[m:].uniform_(-4, 3)
        for net in model.context.f:
            net[4].weight.normal_(0, 0.05)
            net[4].bias.uniform_(-0.5, 0.5)
    return model


@pytest.fixture(scope="module")
def hyper():
    return hp.export_tensors(seeded())


@pytest.fixture(scope="module")
def coder(hyper):
    return hp.HyperCoder({"median": torch.zeros(M)}, hyper)


def _ctx(hyper):
    return {k[4:]: v for k, v in hyper.items() if k.startswith("ctx.")}


def _reference_refine(ctx, g, q, mu, s):
    """Group g's corrections in Python integers, 3x3 convolutions by their definition."""

    def act(a):
        return np.clip(np.where(a < 0, a // 2 ** hp.LEAK_BITS, a), -hp.ACT_MAX, hp.ACT_MAX)

    m, (h, w) = q.shape[0], q.shape[1:]
    k, i = m // context.SLICES, g // 2
    anchor = context.anchors(h, w).numpy().astype(object)
    known = context.known_mask(g, m, context.anchors(h, w)).numpy().astype(np.int64).astype(object)
    wb, ab = hp.WEIGHT_BITS, hp.ACT_BITS
    x = np.concatenate([np.clip(q.astype(object), -context.Q_MAX, context.Q_MAX) * known * 2 ** ab,
                        np.clip(mu[k * i:k * (i + 1)] // 2 ** wb, -hp.ACT_MAX, hp.ACT_MAX),
                        np.clip(s[k * i:k * (i + 1)] // 2 ** wb, -hp.ACT_MAX, hp.ACT_MAX)])
    for j in (0, 2):
        x = act(conv3(x, obj(ctx[f"{g}.{j}.weight"]), obj(ctx[f"{g}.{j}.bias"]) * 2 ** ab) // 2 ** wb)
    out = conv3(x, obj(ctx[f"{g}.4.weight"]), obj(ctx[f"{g}.4.bias"]) * 2 ** ab)
    at = anchor if g % 2 == 0 else 1 - anchor
    return out[:k] * at, out[k:] * at


def test_integer_context_is_exact_integer_arithmetic(hyper):
    ctx = _ctx(hyper)
    rng = np.random.default_rng(1)
    q = rng.integers(-30, 31, (M, 7, 9))
    q[0, 0, 0] = 1 << 20  # beyond Q_MAX: the nets read it clamped
    mu = rng.integers(-2 ** 24, 2 ** 24, (M, 7, 9)).astype(object)
    s = rng.integers(-2 ** 22, 2 ** 23, (M, 7, 9)).astype(object)
    net = context.IntegerContext(ctx, M)
    for g in range(context.groups()):
        got_mu, got_s = mu.astype(np.float64), s.astype(np.float64)
        net.refine(g, q, mu.astype(np.float64), s.astype(np.float64), got_mu, got_s)
        d_mu, d_s = _reference_refine(ctx, g, q, mu, s)
        k, i = M // context.SLICES, g // 2
        want_mu, want_s = mu.copy(), s.copy()
        want_mu[k * i:k * (i + 1)] += d_mu
        want_s[k * i:k * (i + 1)] += d_s
        assert np.array_equal(got_mu.astype(np.int64), want_mu.astype(np.int64))
        assert np.array_equal(got_s.astype(np.int64), want_s.astype(np.int64))


def test_integer_context_tiles_give_the_same_result(hyper, monkeypatch):
    ctx = _ctx(hyper)
    rng = np.random.default_rng(2)
    q = rng.integers(-9, 10, (M, 23, 30))
    mu0 = rng.integers(-2 ** 22, 2 ** 22, (M, 23, 30)).astype(np.float64)
    s0 = rng.integers(-2 ** 21, 2 ** 21, (M, 23, 30)).astype(np.float64)
    net = context.IntegerContext(ctx, M)
    results = []
    for tile in (128, 7, 4):
        monkeypatch.setattr(context, "TILE", tile)
        mu, s = mu0.copy(), s0.copy()
        for g in range(context.groups()):
            net.refine(g, q, mu0, s0, mu, s)
        results.append((mu, s))
    assert all(np.array_equal(a[0], results[0][0]) and np.array_equal(a[1], results[0][1])
               for a in results[1:])


def test_the_float_model_predicts_what_the_integer_one_codes(hyper):
    """Training's float context and the decoder's integer one give the same Gaussians, up to
    the fixed point's rounding."""
    model = seeded().eval()
    q = torch.from_numpy(np.random.default_rng(3).integers(-5, 6, (1, M, 16, 16))).float()
    with torch.no_grad():
        mu, s, _ = model.parameters_of(q)
    c = hp.HyperCoder({"median": torch.zeros(M)}, hyper)
    qi = q[0].numpy().astype(np.int32)
    shift, table = c.tables(qi, c.side(qi))
    mean = shift + (table % hp.MEAN_STEPS) / hp.MEAN_STEPS
    assert np.abs(mean - mu[0].numpy()).max() < 0.2
    sig = hp.scales()[table // hp.MEAN_STEPS]
    assert np.abs(np.log(sig / hp.sigma(s[0]).numpy())).max() < 0.12
    # the context moved them: without it the tables differ
    plain = hp.HyperCoder({"median": torch.zeros(M)},
                          {k: v for k, v in hyper.items() if not k.startswith("ctx.")})
    assert c.NAME == 3 and plain.NAME == 2
    assert not np.array_equal(plain.tables(qi, c.side(qi))[1], table)


# the hyperprior's round trips (escapes; |q| beyond the nets' clamp Q_MAX; 1x1 and 2x1
# grids) and refusals of corrupt payloads, run here on this module's coder 3
from test_hyperprior import test_corrupt_payload_is_refused, test_round_trip  # noqa: E402, F401


@pytest.mark.parametrize("change", ["layout", "missing", "shape", "dtype"])
def test_a_malformed_context_is_refused(hyper, change):
    bad = dict(hyper)
    if change == "layout":
        bad["ctx.layout"] = bad["ctx.layout"] + 1
    elif change == "missing":
        del bad["ctx.3.2.weight"]
    elif change == "shape":
        bad["ctx.0.4.bias"] = bad["ctx.0.4.bias"][:-1]
    else:
        bad["ctx.1.0.weight"] = bad["ctx.1.0.weight"].float()
    with pytest.raises(ValueError, match="context"):
        hp.HyperCoder({"median": torch.zeros(M)}, bad)


def test_a_stored_context_loads_back_for_training(hyper):
    model = ContextHyperPrior.from_tensors(hyper)
    again = hp.export_tensors(model)
    assert all(torch.equal(again[k], v) for k, v in hyper.items() if k.startswith("ctx."))


# --------------------------------------------------------------------------- as a generation
def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def context_models(tmp_path_factory):
    """Generation 1 (factorized, quality 1), generation 2 (+ a hyperprior) and generation 3
    (generation 2's hyperprior + a context model)."""
    d = tmp_path_factory.mktemp("models")
    entry = untrained_base(d)
    reg = registry.Registry(d)
    with_context = seeded(m=64, n=64, seed=2)
    hyper = HyperPrior(m=64, n=64)
    hyper.load_state_dict(with_context.state_dict(), strict=False)
    plain = registry.export_hyperprior(entry, reg.base_tensors(entry)[0], hyper, steps=0,
                                       command="test", generation=2, models_dir=d)
    reg = registry.Registry(d)
    registry.export_hyperprior(plain, reg.base_tensors(plain)[0], with_context, steps=0,
                               command="test", generation=3, models_dir=d)
    return d


def test_a_context_generation_keeps_the_transforms_and_their_pixels(context_models, tmp_path,
                                                                     monkeypatch):
    monkeypatch.setenv("NICODEC_MODELS", str(context_models))
    monkeypatch.setenv("NICODEC_HOME", str(tmp_path / "home"))
    reg = registry.Registry()
    g1, g2, g3 = sorted(reg.bases(), key=lambda m: m.generation)
    assert (g2.arch, g3.arch) == ("factorized+hyperprior", "factorized+hyperprior+context")
    assert g2.transforms == g3.transforms == g1.id
    assert g3.parameters > g2.parameters > g1.parameters
    img = smooth_image(72, 100)
    Image.fromarray(img).save(tmp_path / "i.png")
    assert run("encode", tmp_path / "i.png", "-q", 1, "-o", tmp_path / "new.nic").exit_code == 0
    header, _ = container.parse((tmp_path / "new.nic").read_bytes())
    assert (container.format_id(header.base_id), header.coder) == (g3.id, 3)
    for gen in (1, 2):
        (tmp_path / f"g{gen}.nic").write_bytes(reg.codec(quality=1, generation=gen).encode(img))
    for name in ("new", "g1", "g2"):
        r = run("decode", tmp_path / f"{name}.nic", "-o", tmp_path / f"{name}.png")
        assert r.exit_code == 0, r.output
    for name in ("g1", "g2"):  # the same latents, coded three ways: the same pixels
        assert np.array_equal(np.asarray(Image.open(tmp_path / "new.png")),
                              np.asarray(Image.open(tmp_path / f"{name}.png")))
    info = run("info", tmp_path / "new.nic").stdout
    assert "constriction-rans-hyperprior-context" in info and "generation 3" in info


def test_training_learns_what_earlier_slices_say():
    """Latents whose later slices repeat the first: a hyperprior alone cannot know that, a
    context model trained the same way can, and the exported coders' real code lengths
    show it."""
    from nicodec import hypertrain

    rng = np.random.default_rng(6)
    k = M // context.SLICES
    latents = [np.concatenate([rng.integers(-6, 7, (k, 32, 32))] * context.SLICES)
               .astype(np.int16) for _ in range(4)]
    q = latents[0].astype(np.int32)
    bits = {}
    for kind in (HyperPrior, ContextHyperPrior):
        torch.manual_seed(0)
        model = kind(m=M, n=6)
        hypertrain.train(model, hypertrain.WindowSampler(latents, window=16), 150, lr=1e-2,
                         log=lambda s: None, every=50)
        coder = hp.HyperCoder({"median": torch.zeros(M)}, hp.export_tensors(model))
        assert np.array_equal(coder.decode(coder.encode(q), q.shape), q)
        bits[kind] = coder.ideal_bits(q)
    assert bits[ContextHyperPrior] < 0.75 * bits[HyperPrior]


def test_effort_searches_under_the_context_models_rate(context_models, monkeypatch, tmp_path):
    from nicodec import effort

    monkeypatch.setenv("NICODEC_MODELS", str(context_models))
    monkeypatch.setenv("NICODEC_HOME", str(tmp_path / "home"))
    codec = registry.Registry().codec(quality=1)
    assert codec.coder.NAME == 3
    img = smooth_image(48, 64, seed=4)
    q1 = effort.refine(codec, img, level=1)
    q2 = effort.refine(codec, img, level=2)
    # the search's Gaussians are the ones the context gives q1's own symbols
    shift, table = codec.coder.tables(q1, codec.coder.side(q1))
    density = codec.coder.density(q1)
    mean = shift + (table % hp.MEAN_STEPS) / hp.MEAN_STEPS
    assert np.allclose(density.mean[0].numpy(), mean)
    assert effort.objective(codec, q2, img, codec.lam)[0] <= \
        effort.objective(codec, q1, img, codec.lam)[0]
    data = effort.encode(codec, img, level=2)
    assert np.array_equal(codec.coder.decode(container.parse(data)[1], q2.shape), q2)


def test_an_adapter_with_a_context_model_imports_encodes_and_decodes(context_models, tmp_path,
                                                                     monkeypatch):
    """An adapter package whose quality carries a context model on its hyperprior (0.17):
    validated on import, coded with coder 3, decoded from its header alone; a malformed
    context is refused with one error line."""
    from test_hyperprior import _tampered, tiny_adapter

    from nicodec import package

    monkeypatch.setenv("NICODEC_MODELS", str(context_models))
    monkeypatch.setenv("NICODEC_HOME", str(tmp_path / "home"))
    reg = registry.Registry()
    made = tiny_adapter(tmp_path, k=4)
    channels = 64 + 4
    out = tmp_path / "mine-context.safetensors"
    package.with_hyperprior(made, reg.base_ids(),
                            {1: hp.export_tensors(seeded(m=channels, n=hp.Z_CHANNELS, seed=5))},
                            out, {1: {"context_steps": 0}})
    made.unlink()
    r = run("models", "import", out)
    assert r.exit_code == 0, r.output
    img = smooth_image(64, 80, seed=9)
    Image.fromarray(img).save(tmp_path / "i.png")
    r = run("encode", tmp_path / "i.png", "--domain", "mine", "-q", 1, "-o", tmp_path / "a.nic")
    assert r.exit_code == 0, r.output
    header, _ = container.parse((tmp_path / "a.nic").read_bytes())
    assert header.coder == 3 and header.adapter_id != 0
    assert "constriction-rans-hyperprior-context" in run("info", tmp_path / "a.nic").stdout
    assert run("decode", tmp_path / "a.nic", "-o", tmp_path / "a.png").exit_code == 0
    codec = registry.Registry().codec(quality=1, domain="mine")
    assert codec.coder.channels == channels
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")),
                          codec.reconstruct(codec.latents(img), 64, 80))

    bad = _tampered(out, tmp_path / "bad.safetensors",
                    lambda t: t.__setitem__("hyper.ctx.layout", t["hyper.ctx.layout"] + 1))
    r = run("models", "import", bad)
    assert r.exit_code == 1 and r.output.startswith("error: ") and "context" in r.output
    assert r.output.count("\n") == 1, r.output
