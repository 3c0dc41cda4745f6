"""Training a :class:`~nicodec.network.HyperPrior` on a frozen codec's latents.

The codec's transforms do not change, so its symbols ``q = round(g_a(x) - median)`` are
computed once per training crop (:func:`latent_crops`, the codec's own float32 analysis)
and held in memory; a step then samples windows of them and trains h_a, h_s and z's prior
on the rate alone (the distortion is fixed). A step costs milliseconds instead of a pass
through the analysis.

    python -m nicodec.hypertrain --domain photo -q 1 --steps 16000 --out runs/hp/photo-q1
    python -m nicodec.hypertrain export runs/hp/photo-q1.safetensors --generation 7 \
        --command "python -m nicodec.hypertrain --domain photo -q 1 --steps 16000 ..."

``--context`` adds a context model (:mod:`nicodec.context`, coder 3) to the codec's own
hyperprior, a base model's or (``--domain NAME``) an adapter package's: both train, the
context at ``--lr`` and the hyperprior at a tenth of it (it starts trained; the context
starts as the identity). ``--init`` continues a state this wrote; its steps add up.
``export`` makes a base model's a new generation, ``export-package`` an adapter's a new
package (one state per quality).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from nicodec import data, image
from nicodec.context import SLICES
from nicodec.network import ContextHyperPrior, HyperPrior

CROP = 768  # pixels: the training crops whose latents are precomputed
CROPS_PER_IMAGE = 4
WINDOW = 32  # latent rows/columns of a training window (512 pixels)
BATCH = 8


def latent_crops(codec, files: list[Path], seed: int = 0,
                 per_image: int = CROPS_PER_IMAGE) -> list[np.ndarray]:
    """The codec's integer latents (M, h, w) int16 of up to ``per_image`` random
    ``CROP`` x ``CROP`` crops of each image (the whole image when smaller)."""
    rng = np.random.default_rng(seed)
    out = []
    for f in files:
        rgb = image.load(f).rgb
        h, w = rgb.shape[:2]
        n = 1 if (h <= CROP and w <= CROP) else per_image
        for _ in range(n):
            y0 = int(rng.integers(max(1, h - CROP + 1)))
            x0 = int(rng.integers(max(1, w - CROP + 1)))
            crop = np.ascontiguousarray(rgb[y0:y0 + CROP, x0:x0 + CROP])
            out.append(codec.latents(crop).astype(np.int16))
    return out


class WindowSampler:
    """Random WINDOW x WINDOW windows of latent arrays (smaller arrays padded as the codec
    pads images: by repeating the last row and column)."""

    def __init__(self, latents: list[np.ndarray], window: int = WINDOW, seed: int = 0):
        if not latents:
            raise ValueError("no latents to train on")
        self.latents = latents
        self.window = window
        self.rng = np.random.default_rng(seed)

    def batch(self, n: int) -> torch.Tensor:
        m = self.latents[0].shape[0]
        out = np.zeros((n, m, self.window, self.window), np.float32)
        for i in range(n):
            q = self.latents[self.rng.integers(len(self.latents))]
            h, w = q.shape[1:]
            hh, ww = min(h, self.window), min(w, self.window)
            y0 = int(self.rng.integers(h - hh + 1))
            x0 = int(self.rng.integers(w - ww + 1))
            out[i, :, :hh, :ww] = q[:, y0:y0 + hh, x0:x0 + ww]
            # a window larger than its image: pad by edge replication, as the codec pads
            out[i, :, hh:, :] = out[i, :, hh - 1:hh, :]
            out[i, :, :, ww:] = out[i, :, :, ww - 1:ww]
        return torch.from_numpy(out)


def train(model: HyperPrior, sampler: WindowSampler, steps: int, lr: float = 1e-3,
          log=print, checkpoint=None, every: int = 1000,
          hyper_lr: float | None = None) -> list[float]:
    """Adam on bits per pixel (the side information included), ``lr`` then lr/10 over the
    last 20 % of the steps (``hyper_lr``: the hyperprior's own rate where a context model
    trains at ``lr``); the z prior's quantiles by CompressAI's aux loss. Returns the
    training bpp per ``every`` steps."""
    main = [p for n, p in model.named_parameters()
            if not n.endswith("quantiles") and not n.startswith("context.")]
    ctx = [p for n, p in model.named_parameters() if n.startswith("context.")]
    aux = [p for n, p in model.named_parameters() if n.endswith("quantiles")]
    opt = torch.optim.Adam([{"params": main, "lr": lr if hyper_lr is None else hyper_lr},
                            {"params": ctx, "lr": lr}])
    aux_opt = torch.optim.Adam(aux, lr=1e-3)
    pixels = BATCH * (16 * sampler.window) ** 2
    model.train()
    t0, acc, curve = time.time(), [], []
    for step in range(steps):
        if step == int(0.8 * steps):
            for g in opt.param_groups:
                g["lr"] /= 10
        q = sampler.batch(BATCH)
        bits_y, bits_z = model(q)
        bpp = (bits_y + bits_z) / pixels
        opt.zero_grad()
        bpp.backward()
        opt.step()
        aux_loss = model.z_prior.loss()
        aux_opt.zero_grad()
        aux_loss.backward()
        aux_opt.step()
        acc.append(bpp.item())
        if (step + 1) % every == 0:
            curve.append(float(np.mean(acc)))
            acc.clear()
            log(f"step {step + 1}: {curve[-1]:.4f} bpp ({time.time() - t0:.0f} s)")
            if checkpoint:
                checkpoint(step + 1)
    model.eval()
    return curve


def fit(codec, files: list[Path], steps: int, start: dict | None = None, log=print,
        lr: float | None = None) -> tuple[dict, float]:
    """Train a hyperprior for ``codec``'s latents of the images ``files`` (``start``: a
    stored hyperprior to begin from, e.g. the base's, widened to the codec's channels).
    Returns what a model file stores of it (:func:`~nicodec.hyperprior.export_tensors`)
    and its code length over the training latents relative to ``codec``'s own tables (real
    frozen tables on both sides: below 1 means smaller files)."""
    from nicodec.hyperprior import HyperCoder, export_tensors

    channels = codec.coder.channels
    model = HyperPrior.from_tensors(start, m=channels) if start else HyperPrior(m=channels)
    lr = (WARM_LR if start else 1e-3) if lr is None else lr
    latents = latent_crops(codec, files)
    train(model, WindowSampler(latents), steps, lr, log=log,
          every=max(1, min(1000, steps // 4)))
    tensors = export_tensors(model)
    coder = HyperCoder({"median": codec.coder.median}, tensors)
    sample = latents[:: max(1, len(latents) // 64)]
    ratio = (sum(coder.ideal_bits(q.astype(np.int32)) for q in sample)
             / sum(codec.coder.ideal_bits(q.astype(np.int32)) for q in sample))
    return tensors, ratio


def leak_of(metadata: dict) -> int:
    """h_s's leak bits of a training state (0.14's first runs, which recorded none: ReLU)."""
    return int(metadata.get("leak_bits", 0))


WARM_LR = 3e-4  # from a trained hyperprior: a smaller step keeps what it knows


def export(argv: list[str]) -> None:
    """Save a trained hyperprior with the transforms it was trained on as a new base
    model generation (``models/`` and its manifest)."""
    from safetensors import safe_open

    from nicodec import registry

    ap = argparse.ArgumentParser(prog="python -m nicodec.hypertrain export")
    ap.add_argument("state", help="a PREFIX.safetensors that training wrote")
    ap.add_argument("--generation", type=int, required=True)
    ap.add_argument("--command", required=True, help="the training command, for the manifest")
    a = ap.parse_args(argv)
    with safe_open(a.state, "pt") as f:
        meta = f.metadata()
    reg = registry.Registry()
    entry = reg.find_base(model_id=meta["codec_base"])
    registry.check_new_model(entry.domain, entry.quality, a.generation)
    kind = ContextHyperPrior if meta.get("context") == "1" else HyperPrior
    model = kind(m=reg.load_base(entry)[1].channels, leak_bits=leak_of(meta))
    model.load(load_file(a.state))
    new = registry.export_hyperprior(entry, reg.base_tensors(entry)[0], model,
                                     steps=int(meta["step"]), command=a.command,
                                     generation=a.generation)
    print(f"{new.file}: {new.id} (generation {new.generation}, transforms of {new.transforms})")


def export_package(argv: list[str]) -> None:
    """Save an installed adaptation with a trained hyperprior for each of its qualities as
    a new package file (shipped: recorded in the manifest of its directory)."""
    from safetensors import safe_open

    from nicodec import registry
    from nicodec.hyperprior import export_tensors
    from nicodec.package import with_hyperprior

    ap = argparse.ArgumentParser(prog="python -m nicodec.hypertrain export-package")
    ap.add_argument("name", help="the installed adaptation the hyperpriors were trained on")
    ap.add_argument("states", nargs="+", help="one PREFIX.safetensors per quality")
    ap.add_argument("--out", required=True, help="the new package file")
    ap.add_argument("--command", required=True, help="the training command, for the manifest")
    a = ap.parse_args(argv)
    reg = registry.Registry()
    meta = reg.find_package(a.name)
    reg.check_new_file(Path(a.out))
    hypers, notes = {}, {}
    for path in a.states:
        with safe_open(path, "pt") as f:
            info = f.metadata()
        quality = int(info["quality"])
        if info["codec_adapter"] != meta.qualities[quality].id:
            raise SystemExit(f"{path} was trained on adapter {info['codec_adapter']}, not "
                             f"{a.name}'s quality {quality} ({meta.qualities[quality].id})")
        kind = ContextHyperPrior if info.get("context") == "1" else HyperPrior
        model = kind(m=reg.codec(quality=quality, domain=a.name).coder.channels,
                     leak_bits=leak_of(info))
        hypers[quality] = export_tensors(model.load(load_file(path)))
        steps = "context_steps" if kind is ContextHyperPrior else "hyperprior_steps"
        notes[quality] = {steps: int(info["step"]), "hyperprior_of": meta.qualities[quality].id}
    sha = reg.manifest.sha256_of(meta.path.name) if meta.shipped else None
    out = Path(a.out)
    new = with_hyperprior(meta.path, reg.base_ids(), hypers, out, notes, sha)
    if out.resolve().parent == reg.dir.resolve():
        registry.record_package(out, a.command, reg.dir)
    print(f"{out}: {a.name}, qualities " + ", ".join(
        f"q{q} {r.id}" for q, r in sorted(new.qualities.items())))


def own_hyperprior(reg, domain: str, quality: int) -> dict:
    """The ``hyper.*`` (without the prefix) that ``encode --domain DOMAIN -q QUALITY`` codes
    with: the newest base model's, or the adapter package's own; empty if it has none."""
    from nicodec import modelfile, package

    if domain == "photo":
        entry = reg.find_base(quality=quality)
        return modelfile.hyper_tensors(reg.base_tensors(entry)[0])
    meta = reg.find_package(domain)
    return modelfile.hyper_tensors(package.quality_tensors(reg.package_tensors(meta), quality))


def main(argv: list[str] | None = None) -> None:
    import sys

    from nicodec.registry import Registry

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["export"]:
        return export(argv[1:])
    if argv[:1] == ["export-package"]:
        return export_package(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--domain", default="photo")
    ap.add_argument("-q", "--quality", type=int, required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--init", help="a HyperPrior state (safetensors) to start from")
    ap.add_argument("--context", action="store_true",
                    help="add a context model to the codec's own hyperprior (coder 3)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--crops-per-image", type=int, default=CROPS_PER_IMAGE,
                    help=f"random {CROP}x{CROP} crops of each training image")
    ap.add_argument("--out", required=True, help="output prefix: PREFIX.safetensors, .json")
    a = ap.parse_args(argv)
    torch.manual_seed(0)
    reg = Registry()
    codec = reg.codec(quality=a.quality, domain=a.domain)
    files = data.list_images(data.split_dir(a.domain, "train"))
    t0 = time.time()
    torch.set_num_threads(a.threads)
    lat = latent_crops(codec, files, per_image=a.crops_per_image)
    print(f"{len(lat)} latent crops of {len(files)} images ({time.time() - t0:.0f} s)",
          flush=True)
    if a.context:
        own = own_hyperprior(reg, a.domain, a.quality)
        if not own:
            raise SystemExit("--context refines a codec's own hyperprior: "
                             f"{a.domain} q{a.quality} has none")
        if codec.coder.channels % SLICES:
            raise SystemExit(f"--context: {a.domain} q{a.quality}'s {codec.coder.channels} "
                             f"latent channels do not split into {SLICES} slices")
        model = ContextHyperPrior.from_tensors(own)
    else:
        model = HyperPrior(m=codec.coder.channels)
    done = 0  # steps the --init state had already trained (its file's "step")
    if a.init:
        from safetensors import safe_open

        model.load(load_file(a.init))
        with safe_open(a.init, "pt") as f:
            done = int((f.metadata() or {}).get("step", 0))
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save(step: int) -> None:
        save_file(model.state(), f"{out}.safetensors",
                  metadata={"domain": a.domain, "quality": str(a.quality),
                            "step": str(done + step),
                            "leak_bits": str(model.leak_bits),
                            "context": str(int(a.context)),
                            "codec_base": f"{codec.base_id:08x}",
                            "codec_adapter": f"{codec.adapter_id:08x}"})

    curve = train(model, WindowSampler(lat), a.steps, a.lr,
                  log=lambda s: print(s, flush=True), checkpoint=save,
                  hyper_lr=a.lr / 10 if a.context else None)
    save(a.steps)
    json.dump({"domain": a.domain, "quality": a.quality, "steps": a.steps, "lr": a.lr,
               "context": a.context,
               "init": a.init, "init_steps": done, "curve_bpp_per_1000": curve,
               "codec_base": f"{codec.base_id:08x}", "codec_adapter": f"{codec.adapter_id:08x}"},
              open(f"{out}.json", "w"), indent=1)


if __name__ == "__main__":
    from nicodec.errors import NicodecError

    try:
        main()
    except NicodecError as e:
        raise SystemExit(f"error: {e}") from None
