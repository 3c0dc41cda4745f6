"""Adapting the base codec to a target domain (paper sections 2.2 and 3.2).

* ``cawf`` (Codec Adaptation without Forgetting): the base network stays frozen and
  embedded; an :class:`~nicodec.network.Adapter` adds K custom filters per conv layer and
  its own entropy model. Output: an adapter (custom parameters only).
* ``selective``: convolutions frozen; GDN/IGDN, the entropy model and new per-channel
  scale and bias (``z~ = alpha z + beta``) are tuned (~5% of the parameters).
* ``naive``: every parameter is tuned.

Selective and naive produce a complete new codec with its own ID, which cannot decode the
base codec's bitstreams (catastrophic forgetting); CAwF leaves the base codec untouched.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from nicodec import distributed, image, methods, modelfile, package, registry
from nicodec.codec import Codec
from nicodec.data import CropSampler, list_images
from nicodec.entropy import build_tables
from nicodec.errors import NicodecError
from nicodec.network import FactorizedPrior, count_parameters
from nicodec.train import TrainConfig, train

MIN_IMAGES = 2  # at least one to train on and one to hold out
DEFAULT_LR = 5e-4  # every method; what the shipped adapters were trained with
SYNTHESIS_LR = 1e-4  # the synthesis stage's (as the base models' synthesis stage)


def trainable(method: str, base: FactorizedPrior, k: int,
              channel_affine: bool = False) -> nn.Module:
    """The network to train for ``method``, initialised from ``base`` (which is not modified).

    ``channel_affine``: CAwF only, see :class:`~nicodec.network.Adapter`."""
    m = methods.get(method)
    return m.build(base, k, **({"channel_affine": channel_affine} if m.options else {}))


def package_tensors(net: nn.Module, method: str) -> dict[str, torch.Tensor]:
    """What a package stores for one quality: custom or full weights + frozen tables."""
    eb = net.entropy_bottleneck
    eb.update(force=True, update_quantiles=True)
    module = methods.get(method).stored(net)
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()
               if "entropy_bottleneck._" not in k}
    tensors |= {modelfile.TABLE_PREFIX + k: v for k, v in build_tables(eb).items()}
    return tensors


def split_holdout(files: list[Path], fraction: float) -> tuple[list[Path], list[Path]]:
    """Deterministic hold-out: files ranked by the hash of their name."""
    ranked = sorted(files, key=lambda p: hashlib.sha256(p.name.encode()).hexdigest())
    n_hold = min(len(files) - 1, max(1, round(fraction * len(files))))
    return sorted(ranked[n_hold:]), sorted(ranked[:n_hold])


def read_folder(folder: Path) -> list[Path]:
    """Every image under ``folder``; a clear error if too few, or if one is unreadable."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NicodecError(f"{folder}: not a directory")
    files = list_images(folder)
    if len(files) < MIN_IMAGES:
        raise NicodecError(f"{folder}: found {len(files)} image(s); adaptation needs at least "
                           f"{MIN_IMAGES} (10 to 50 work well)")
    for f in files:
        image.load(f)  # raises a clear NicodecError on an unreadable file
    return files


def held_out(codec: Codec, imgs: list[np.ndarray]) -> dict:
    """Mean bpp (real bytes) and PSNR of a codec over the held-out images."""
    from nicodec.evaluate import codec_point

    return codec_point(codec, [(str(i), rgb) for i, rgb in enumerate(imgs)], codec.name,
                       with_ms_ssim=False)


def adapted_codec(net: nn.Module, method: str, tensors: dict, base_id: str, quality: int,
                  lam: float, name: str, device: str) -> Codec:
    """The Codec of a freshly trained network, with the IDs its package will give it."""
    from nicodec.hyperprior import entropy_coder

    _, tables = modelfile.split_tables(tensors)
    ids = methods.get(method).header_ids(int(base_id, 16), modelfile.content_id(tensors))
    return Codec(net=net.eval(), coder=entropy_coder(tables, modelfile.hyper_tensors(tensors)),
                 base_id=ids[0], adapter_id=ids[1], quality=quality, lam=lam, device=device,
                 name=name)


def start_from(init: Path | str, reg: registry.Registry) -> tuple[package.PackageInfo, dict]:
    """The adaptation ``init`` names (a package file, or an installed adaptation's name),
    validated: its metadata and tensors, for :func:`adapt` to continue training from."""
    path = Path(init)
    if path.is_file():
        return package.validate(path, reg.base_ids(), qualities=set(reg.qualities()))
    if path.suffix == ".safetensors" or len(path.parts) > 1:
        raise NicodecError(f"--init {init}: no such file")
    try:
        meta = reg.find_package(str(init))
    except NicodecError as e:
        raise NicodecError(f"--init {init}: not a file, and {e}") from None
    return meta, reg.package_tensors(meta)


def _check_start(start: package.PackageInfo, method: str | None, k: int | None,
                 channel_affine: bool | None) -> tuple[str, int, bool | None]:
    """(method, K, channel_affine) of a run that continues ``start``: its own, and a clear
    error where the caller asked for another."""
    m = methods.get(start.method)
    own_affine = None
    if "channel_affine" in m.options:
        own_affine = bool(next(iter(start.qualities.values())).training.get("channel_affine"))
    # a method that grows takes more custom filters than it has (Method.grow)
    k_own = k if m.grows and k is not None and k > start.k else start.k
    asked = {"method": (method, start.method), "custom filters": (k, k_own if m.uses_k else None),
             "channel affine": (channel_affine, own_affine)}
    for what, (wanted, own) in asked.items():
        if wanted is not None and wanted != own:
            more = (f"; it can grow to more than {start.k} custom filters"
                    if what == "custom filters" and m.grows else "")
            raise NicodecError(f"--init {start.path.name}: its {what} is {own}, not {wanted} "
                               f"(a continued adaptation keeps the form it has{more})")
    return start.method, k_own, own_affine


HYPERPRIOR_STEPS = 2000  # adapt's least hyperprior steps by default (astro q1: -13.7 %)


def adapt(folder: Path, *, name: str, method: str | None = None, k: int | None = None,
          qualities=None, steps: int = 1000, holdout: float = 0.2,
          device: str = "cpu", batch: int = 8, crop: int = 128, lr: float | None = None,
          out_path: Path | None = None, reg: registry.Registry | None = None,
          log=print, progress: bool = True, channel_affine: bool | None = None,
          synthesis_steps: int | None = None, init: Path | str | None = None,
          distortion: str = "mse", mixed_quantization: bool = False,
          hyperprior_steps: int | None = None) -> dict:
    """Train ``method`` on the images under ``folder`` for each quality, write the package.

    ``method`` None means ``cawf``, ``k`` None 16 custom filters.
    ``qualities`` None means every quality of the installed base models.
    ``init``: continue training an existing adaptation (a package file or an installed
    name) instead of starting from the base codec: its method and form are kept, and each
    quality must extend the base model this run adapts (the newest of that quality). The new
    package has new IDs; the one it started from is not modified.
    Returns {"path", "meta", "rows"} where rows hold held-out bpp/PSNR of base and adapted.
    ``channel_affine`` (CAwF): None means on for CAwF (see :class:`~nicodec.network.Adapter`).
    ``synthesis_steps``: after the ``steps``, this many more that tune only the trained
    synthesis parameters on rounded latents, the analysis and entropy model frozen
    (:func:`~nicodec.train.freeze_for_synthesis_tuning`): lower distortion at the same rates
    (astro q1, held out: +0.73 dB for 500 after 2,000). None: a quarter of ``steps``.

    ``distortion``: the loss's distortion, of both stages; ``mixed_quantization``: the main
    stage feeds the synthesis rounded latents too (:class:`~nicodec.train.TrainConfig`'s
    ``distortion`` and ``round_for_synthesis``).

    ``hyperprior_steps``: then train a hyperprior that codes the adaptation's latents
    (:mod:`nicodec.hypertrain`; rate only, so pixels do not change) for this many steps
    (from ``init``'s own where it has one, else from scratch: the base's, widened to the
    adapter's channels, did worse in 1,000 steps than a fresh one in 2,000); it is kept, and
    the package's files entropy-coded with it (coder 2), only if it codes the training
    latents in fewer bits than the adaptation's own tables. None: ``max(steps,
    HYPERPRIOR_STEPS)`` when the base has a hyperprior (generation 7), else 0.

    Under torchrun every rank trains on its shard of the training images and rank 0 alone
    evaluates, writes the package and returns the summary (the others return None).
    """
    package.check_name(name)
    reg = reg or registry.Registry()
    path = out_path or registry.user_adapters_dir() / f"{name}.safetensors"
    reg.check_new_file(path)
    start = start_from(init, reg) if init is not None else None
    if start is not None:
        method, k, channel_affine = _check_start(start[0], method, k, channel_affine)
    method = "cawf" if method is None else method
    k = 16 if k is None else k
    if method not in methods.names():
        raise NicodecError(f"unknown method {method!r} (use {', '.join(methods.names())})")
    m = methods.get(method)
    if channel_affine and "channel_affine" not in m.options:
        raise NicodecError("--channel-affine applies to CAwF adapters only")
    channel_affine = "channel_affine" in m.options if channel_affine is None else channel_affine
    lr = DEFAULT_LR if lr is None else lr
    synthesis_steps = steps // 4 if synthesis_steps is None else synthesis_steps
    files = read_folder(folder)
    train_files, held_files = split_holdout(files, holdout)
    qualities = reg.qualities() if qualities is None else qualities
    entries = [reg.find_base(quality=q) for q in qualities]  # fail early if one is missing
    rebased = _check_start_bases(start[0], entries, reg) if start is not None else {}
    device = distributed.init(device)
    main = distributed.is_main()
    if not main:
        log = _silent
    held = [image.load(f).rgb for f in held_files] if main else []
    sampler = CropSampler.from_files(distributed.shard(train_files), crop=crop)
    form = (f", K={k}" + (" + channel affine" if channel_affine else "")
            if m.uses_k else "")
    log(f"adapting '{name}' ({method}{form}) on "
        f"{len(train_files)} images, holding out {len(held_files)}; qualities "
        f"{', '.join(map(str, qualities))}; {steps} steps each at lr {lr:g} on {device}")
    grown = start is not None and m.uses_k and k != start[0].k
    if grown:
        log(f"--init's {start[0].k} custom filters per layer grow to {k}: the new ones start "
            "beside the trained ones, which compute what they computed")
    for entry in entries:
        if entry.quality in rebased:
            old = rebased[entry.quality]
            log(f"q{entry.quality}: --init's adapter extends base {old.id} (generation "
                f"{old.generation}); it goes on training on {entry.id} (generation "
                f"{entry.generation}), the newest base of quality {entry.quality}")
    results, rows = {}, []
    t_start = time.perf_counter()
    for n_done, entry in enumerate(entries):
        quality = entry.quality
        base_codec = reg.codec(quality=quality, device=device)
        net = trainable(method, reg.base_network(entry, device), k, channel_affine).to(device)
        if start is not None:
            load_start(net, method, start[1], quality, k_from=start[0].k)
        cfg = TrainConfig(lam=entry.lam, steps=steps, batch=batch, crop=crop, lr=lr,
                          distortion=distortion, round_for_synthesis=mixed_quantization,
                          log_every=max(1, min(50, steps // 4)),
                          label=f"q{quality} ({entries.index(entry) + 1}/{len(entries)})")
        stats = train(net, sampler, cfg, device=device, console_log=progress)
        if synthesis_steps:
            # the medians the package will round around (export fits them to the density)
            net.entropy_bottleneck.update(force=True, update_quantiles=True)
            stage = replace(cfg, steps=synthesis_steps, lr=SYNTHESIS_LR, synthesis_only=True,
                            log_every=max(1, min(50, synthesis_steps // 4)),
                            label=f"q{quality} synthesis")
            stats = train(net, sampler, stage, device=device, console_log=progress)
        if not main:
            continue
        tensors = package_tensors(net, method)
        codec = adapted_codec(net, method, tensors, entry.id, quality, entry.lam,
                              name, device)
        base_hyper = modelfile.hyper_tensors(reg.base_tensors(entry)[0])
        own = (modelfile.hyper_tensors(package.quality_tensors(start[1], quality))
               if start is not None else {})  # --init's own hyperprior, if it has one
        n_hyper = ((max(steps, HYPERPRIOR_STEPS) if base_hyper else 0)
                   if hyperprior_steps is None else hyperprior_steps)
        if n_hyper:
            from nicodec import hypertrain

            log(f"q{quality}: training its hyperprior, {n_hyper} steps"
                + (" from --init's" if own else ""))
            hyper, ratio = hypertrain.fit(codec, train_files, n_hyper, start=own or None,
                                          log=log)
            if ratio < 1:
                tensors |= {modelfile.HYPER_PREFIX + k_: v for k_, v in hyper.items()}
                codec = adapted_codec(net, method, tensors, entry.id, quality, entry.lam,
                                      name, device)
                log(f"q{quality}: the hyperprior codes the training images' latents in "
                    f"{100 * (1 - ratio):.1f} % fewer bits")
            else:
                log(f"q{quality}: after {n_hyper} steps the hyperprior codes the training "
                    f"images' latents in {100 * (ratio - 1):.1f} % more bits than the "
                    "adaptation's own tables: left out (more --hyperprior-steps may help)")
                n_hyper = 0
        slope = None
        if codec.steps:  # its files pick their grids (nicodec.quantstep) at this rate
            from nicodec import quantstep

            slope = codec.step_slope = quantstep.adapter_slope(codec, train_files)
            log(f"q{quality}: " + (f"step_slope {slope:.2f} dB per bpp: each file picks its "
                                   "quantisation grid" if slope else
                                   "no positive step_slope: its files keep the unit grid"))
        before, after = held_out(base_codec, held), held_out(codec, held)
        info = {"base_id": entry.id, "lambda": entry.lam, "steps": steps, "lr": lr,
                **({"synthesis_steps": synthesis_steps} if synthesis_steps else {}),
                **({"distortion": distortion} if distortion != "mse" else {}),
                **({"mixed_quantization": True} if mixed_quantization else {}),
                **({"init_id": start[0].qualities[quality].id} if start else {}),
                **({"rebased_from": rebased[quality].id} if quality in rebased else {}),
                **({"grown_from_k": start[0].k} if grown else {}),
                **({"hyperprior_steps": n_hyper} if n_hyper else {}),
                **({"step_slope": slope} if slope else {}),
                "train_images": len(train_files), "train_loss": stats["loss"],
                "parameters": count_parameters(m.stored(net))}
        if "channel_affine" in m.options:
            info["channel_affine"] = channel_affine
        results[quality] = ({k_: v.cpu() for k_, v in tensors.items()}, info)
        rows.append({"quality": quality, "base_bpp": before["bpp"],
                     "base_psnr": before["psnr"], "bpp": after["bpp"], "psnr": after["psnr"]})
        per = (time.perf_counter() - t_start) / (n_done + 1)
        left = len(entries) - n_done - 1
        log(f"q{quality} done ({n_done + 1}/{len(entries)}): held-out {after['bpp']:.4f} bpp "
            f"{after['psnr']:.2f} dB" + (f"; about {per * left / 60:.1f} min left for the "
                                         f"other {left} qualities" if left else ""))
    if not main:
        distributed.finish()
        return None
    meta = package.save(path, name=name, method=method, k=k if m.uses_k else 0,
                        entries=results)
    summary = {"path": path, "meta": meta, "rows": rows, "held_out": len(held_files)}
    if len(rows) >= 2:
        from nicodec.evaluate import compare

        (row,) = compare([{"name": "base", "points": [{"bpp": r["base_bpp"],
                                                      "psnr": r["base_psnr"]} for r in rows]},
                          {"name": name, "points": [{"bpp": r["bpp"], "psnr": r["psnr"]}
                                                    for r in rows]}])
        summary |= {k: v for k, v in row.items() if k.startswith("bd_")}
    distributed.finish()
    return summary


def _check_start_bases(start: package.PackageInfo, entries,
                       reg: registry.Registry) -> dict[int, registry.BaseModel]:
    """Each quality to train exists in ``start`` and extends the base model it will be
    trained on, or, for an adapter that stores only its own parameters (CAwF), an older base
    of the same quality and domain: then its parameters are a warm start on the newest base
    (a new generation renewed that quality). Returns {quality: that older base}."""
    extends = methods.get(start.method).extends_base
    known = {b.id: b for b in reg.bases()}
    rebased = {}
    for entry in entries:
        record = start.qualities.get(entry.quality)
        if record is None:
            raise NicodecError(f"--init {start.path.name}: has no quality {entry.quality} "
                               f"(it has {', '.join(map(str, sorted(start.qualities)))}; "
                               "pick them with --qualities)")
        if record.base_id == entry.id:
            continue
        old = known.get(record.base_id)
        if not (extends and old is not None and old.quality == entry.quality
                and old.domain == entry.domain):
            raise NicodecError(f"--init {start.path.name}: its quality {entry.quality} "
                               f"extends base model {record.base_id}, not {entry.id} (the "
                               f"newest base of quality {entry.quality}, which adaptation "
                               "builds on); continue only the qualities whose base is still "
                               "the newest (--qualities)")
        rebased[entry.quality] = old
    return rebased


def load_start(net: nn.Module, method: str, tensors: dict, quality: int,
               k_from: int | None = None) -> None:
    """Load quality ``quality`` of a package's ``tensors`` into the trainable ``net``; a
    package of ``k_from`` custom filters, fewer than ``net``'s, grows into it."""
    from nicodec.train import load_model_tensors

    m = methods.get(method)
    weights, _ = modelfile.split_tables(package.quality_tensors(tensors, quality))
    if m.uses_k and k_from is not None and k_from != m.stored(net).k:
        m.grow(net, weights, k_from)
    else:
        load_model_tensors(m.stored(net), weights, prefix="")


def _silent(*_args) -> None:
    """The log of ranks other than 0."""
