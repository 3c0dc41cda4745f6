"""The ``nicodec`` command line: encode, decode, info, adapt, models, eval, train.

Every user-facing failure is a :class:`~nicodec.errors.NicodecError` and becomes one red
``error:`` line on stderr with exit status 1; nothing half-written is left behind.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape

from nicodec import methods
from nicodec.errors import NicodecError

_WIDTH = None if sys.stdout.isatty() else 120  # tables stay readable when piped
out = Console(highlight=False, soft_wrap=True, width=_WIDTH)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class Cli(click.Group):
    """Turns NicodecError (and stray OSErrors) into one clear line and exit status 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except NicodecError as e:
            err.print(f"[red]error:[/red] {escape(str(e))}")
            sys.exit(1)
        except OSError as e:
            msg = f"{e.strerror or e}: {e.filename or ''}".rstrip(": ")
            err.print(f"[red]error:[/red] {escape(msg)}")
            sys.exit(1)
        except MemoryError:
            err.print(f"[red]error:[/red] {OUT_OF_MEMORY}")
            sys.exit(1)
        except RuntimeError as e:  # torch reports a failed allocation as a RuntimeError
            if "alloc" not in str(e).lower() and "out of memory" not in str(e).lower():
                raise
            err.print(f"[red]error:[/red] {OUT_OF_MEMORY}")
            sys.exit(1)


OUT_OF_MEMORY = ("not enough memory for this image (about 0.2 GB per megapixel); free "
                 "memory or lower --max-pixels")


@click.group(cls=Cli)
@click.version_option(package_name="nicodec")
def main():
    """nicodec: a neural image codec that adapts to your images without forgetting.

    \b
    Examples:
      nicodec encode photo.png -o photo.nic          # then: nicodec decode photo.nic
      nicodec adapt ./my_photos --name personal      # then: --domain personal
      nicodec info photo.nic
    \b
    Exit status: 0 success; 1 an error (one "error:" line on stderr each; with several
    inputs the others are still done); 2 a usage error (unknown option, bad value).
    """


DEVICE = click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
                      show_default=True, help="where the network runs")
# training options of `train` and `adapt`; the choices are train.DISTORTIONS, spelled out
# so that --help does not load torch
DISTORTION = click.option(
    "--distortion", type=click.Choice(["mse", "psnr"]), default="mse", show_default=True,
    help="the loss's distortion: the MSE, or the geometric mean of the crops' MSEs (whose "
         "PSNR is their mean PSNR, as evaluations report)")
MIXED_QUANTIZATION = click.option(
    "--mixed-quantization", is_flag=True,
    help="feed the synthesis the rounded latents it decodes (straight-through gradient) "
         "while the rate keeps the noise proxy (Minnen & Singh 2020; with train --hyperprior "
         "the rate is that of the rounded symbols)")


def _outputs(inputs: tuple[str, ...], output: str | None, suffix: str) -> list[Path]:
    """One input: OUT is the file (default: stem + suffix beside it). Several: OUT is a
    directory (created) holding <stem><suffix> for each."""
    if len(inputs) == 1 and not (output and Path(output).is_dir()):
        if output:
            return [Path(output)]
        _refuse_overwrite([Path(inputs[0]).with_suffix(suffix)])
        return [Path(inputs[0]).with_suffix(suffix)]
    directory = Path(output) if output else None
    if directory is not None:
        if directory.exists() and not directory.is_dir():
            raise NicodecError(f"{directory}: with several inputs, -o must be a directory")
        directory.mkdir(parents=True, exist_ok=True)
    paths = [(directory or Path(i).parent) / (Path(i).stem + suffix) for i in inputs]
    if len(set(paths)) != len(paths):
        raise NicodecError("several inputs share a file name stem; their outputs would clash")
    if output is None:
        _refuse_overwrite(paths)
    return paths


def _refuse_overwrite(paths: list[Path]) -> None:
    """Default outputs never replace a file (e.g. the original PNG beside a .nic)."""
    for p in paths:
        if p.exists():
            raise NicodecError(f"{p} exists; name the output with -o to replace it")


def _installed_qualities() -> list[int]:
    from nicodec import registry

    return registry.Registry().qualities()


def _quality(ctx, param, value):
    """One quality the installed base models define (the manifest's, not a table here)."""
    if value is not None and value not in (known := _installed_qualities()):
        raise click.BadParameter(f"{value} is not a quality of the installed models "
                                 f"({', '.join(map(str, known))})")
    return value


def _multiple_of_16(ctx, param, value: int) -> int:
    """A training crop's side: the network downsamples by 16."""
    if value % 16:
        raise click.BadParameter(f"{value} is not a multiple of 16")
    return value


def _qualities(ctx, param, value):
    """A comma-separated list of qualities; default: every quality the models define."""
    known = _installed_qualities()
    if value is None:
        return known
    try:
        qs = sorted({int(v) for v in value.split(",")})
    except ValueError:
        raise click.BadParameter("a comma-separated list of qualities") from None
    if not qs or not set(qs) <= set(known):
        raise click.BadParameter(f"qualities must be among {', '.join(map(str, known))}")
    return qs


QUIET = click.option("--quiet", is_flag=True, help="print errors only")
VERBOSE = click.option("-v", "--verbose", is_flag=True,
                       help="also print the models, effort and choices behind each file")
MAX_PIXELS = click.option("--max-pixels", type=click.IntRange(1), default=None,
                          help="refuse larger images (default 40,000,000, or "
                               "$NICODEC_MAX_PIXELS); memory is about 0.2 GB per megapixel")


def _efforts(ctx, param, value):
    """``1,3`` -> [1, 3]: each an effort level (no repeats)."""
    from nicodec.effort import EFFORTS

    try:
        levels = [int(v) for v in str(value).split(",")]
    except ValueError:
        raise click.BadParameter(f"{value!r}: comma-separated effort levels, e.g. 1,3")
    bad = [v for v in levels if v not in EFFORTS]
    if bad or len(set(levels)) != len(levels):
        raise click.BadParameter(f"{value!r}: each of {', '.join(map(str, EFFORTS))} at most "
                                 "once")
    return levels


def _effort(ctx, param, value):
    from nicodec.effort import EFFORTS

    if value not in EFFORTS:
        raise click.BadParameter(f"effort must be one of {', '.join(map(str, EFFORTS))}")
    return value


def _step(ctx, param, value):
    """``auto`` or an integer step exponent (:mod:`nicodec.quantstep`)."""
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise click.BadParameter(f"{value!r}: 'auto' or an integer exponent, e.g. 0") from None


def _steps(ctx, param, value):
    """``auto,0`` -> ["auto", 0]: each a grid (no repeats)."""
    steps = [_step(ctx, param, v.strip()) for v in str(value).split(",")]
    if len(set(steps)) != len(steps):
        raise click.BadParameter(f"{value!r}: each grid at most once")
    return steps


def _check_inputs(paths: tuple[str, ...]) -> None:
    """Input errors come first: every input exists, and '-' (stdin) stands alone."""
    if "-" in paths and len(paths) > 1:
        raise NicodecError("'-' (standard input) must be the only input")
    for p in paths:
        if p != "-":
            _existing_file(p)


def _stdio_outputs(inputs: tuple[str, ...], output: str | None, suffix: str) -> list[str | Path]:
    """Like :func:`_outputs`, with '-' for standard input and output."""
    if output == "-":
        if len(inputs) > 1:
            raise NicodecError("-o - (standard output) takes a single input")
        return ["-"]
    if inputs == ("-",):
        if not output:
            raise NicodecError("reading standard input needs -o (a file, or - for stdout)")
        return [Path(output)]
    return _outputs(inputs, output, suffix)


def _write(dst, data: bytes) -> None:
    from nicodec import image

    if dst == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        image.atomic_write(Path(dst), data)


def _files_progress(total: int, enabled: bool):
    """A progress bar on stderr over several files (nothing for one)."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeRemainingColumn)

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), console=err, transient=True,
                    disable=not enabled or total < 2)


@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(allow_dash=True))
@click.option("-o", "--output", type=click.Path(allow_dash=True),
              help="output file ('-' for standard output; one input) or directory")
@click.option("-q", "--quality", type=int, default=3, show_default=True, callback=_quality,
              help="1 = lowest rate .. 4 = highest quality")
@click.option("--domain", default="photo", show_default=True,
              help="photo (the base codec), an installed adapter's name, or auto")
@click.option("-e", "--effort", type=int, default=1, show_default=True, callback=_effort,
              help="1 = plain rounding (fast); 2, 3, 4 = search the latents longer for a "
                   "smaller file at equal quality, on the grid --step gives")
@click.option("--target-bpp", type=float, default=None,
              help="choose the quality per image to land within 3 % of this size")
@click.option("--target-psnr", type=float, default=None,
              help="the smallest file with at least this PSNR (dB)")
@click.option("--step", default="auto", show_default=True, callback=_step,
              help="quantisation grid: auto (per image, for mean PSNR; files need nicodec "
                   ">= 0.18 unless the unit grid is best), 0 (the unit grid: files every "
                   "release reads), or an exponent -24..24 (larger: finer)")
@MAX_PIXELS
@QUIET
@VERBOSE
@DEVICE
def encode(images, output, quality, domain, effort, target_bpp, target_psnr, step,
           max_pixels, quiet, verbose, device):
    """Compress IMAGES (PNG, JPEG, TIFF, WebP, BMP, ...; '-' reads stdin) to .nic files.

    \b
    Examples:
      nicodec encode photo.png                       # writes photo.nic beside it
      nicodec encode photo.png -o small.nic -q 1 --effort 3
      nicodec encode photo.png --step 0 -o old.nic   # a file every release decodes
      nicodec encode photo.png --target-bpp 0.5 -o - > photo.nic
      cat photo.png | nicodec encode - -o photo.nic
      nicodec encode shots/*.png -o out/ --domain auto
    """
    import time

    from nicodec import api, image

    image.set_max_pixels(max_pixels)
    _check_inputs(images)
    encoder = api.Encoder(quality=quality, domain=domain, device=device, effort=effort,
                          target_bpp=target_bpp, target_psnr=target_psnr, step=step)
    targets = _stdio_outputs(images, output, ".nic")

    def encode_one(src, dst):
        t0 = time.perf_counter()
        img = image.load_bytes(sys.stdin.buffer.read()) if src == "-" else image.load(src)
        with _effort_progress(effort, quiet, src) as advance:
            enc = encoder.encode(img, progress=advance)
        _write(dst, enc.data)
        dt = time.perf_counter() - t0
        h, w = img.rgb.shape[:2]
        if not quiet:
            note = "  (alpha channel dropped)" if img.dropped_alpha else ""
            if img.frames > 1:
                note += f"  (first of {img.frames} frames coded)"
            err.print(f"{src} -> {dst}  {w}x{h}  {len(enc.data):,} bytes  "
                      f"{8 * len(enc.data) / (w * h):.4f} bpp  {dt:.2f} s  "
                      f"({enc.codec_name} q{enc.quality}"
                      f"{f', effort {effort}' if effort > 1 else ''}){note}", markup=False)
        if enc.tried and not quiet:
            err.print("  auto: " + ", ".join(
                f"{name} {n:,} bytes R+lambda*D {cost:.4f}" for name, n, cost in enc.tried)
                + f"; kept {enc.codec_name} (lowest R + lambda*D)", markup=False)
        if verbose:
            _print_models(enc.data, f", dead zone {enc.deadzone:.3f}" if enc.deadzone else "")

    _for_each(list(zip(images, targets)), "encoding", quiet, encode_one)


def _for_each(pairs: list, what: str, quiet: bool, work) -> None:
    """``work(src, dst)`` for each input, with a progress bar over several. One input's
    failure is the command's error; with several, each failure is one error line, the
    others are still done, and the exit status is 1."""
    failures = 0
    with _files_progress(len(pairs), not quiet) as bar:
        task = bar.add_task(what, total=len(pairs))
        for src, dst in pairs:
            try:
                work(src, dst)
            except NicodecError as e:
                if len(pairs) == 1:
                    raise
                msg = str(e) if str(e).startswith(str(src)) else f"{src}: {e}"
                err.print(f"[red]error:[/red] {escape(msg)}")
                failures += 1
            finally:
                bar.advance(task)
    if failures:
        sys.exit(1)


def _print_models(data: bytes, extra: str = "") -> None:
    """-v: the models a file names."""
    from nicodec import container

    header, _ = container.parse(data)
    adapter = container.format_id(header.adapter_id) if header.adapter_id else "none"
    step = f", quantisation step exponent {header.step}" if header.step else ""
    err.print(f"  base model {container.format_id(header.base_id)}, adapter {adapter}, "
              f"format version {header.version}{step}{extra}", markup=False)


def _effort_progress(effort: int, quiet: bool, label: str):
    """A context giving ``advance(done, total)`` for a slow effort's steps (a no-op at
    effort 1 or with --quiet)."""
    import contextlib

    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    if effort == 1 or quiet:
        return contextlib.nullcontext(None)

    @contextlib.contextmanager
    def bar():
        with Progress(TextColumn(f"{escape(str(label))} effort {effort}"), BarColumn(),
                      TimeRemainingColumn(), console=err, transient=True) as p:
            task = p.add_task("", total=None)

            def advance(done, total):
                p.update(task, completed=done, total=total)
            yield advance
    return bar()


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(allow_dash=True))
@click.option("-o", "--output", type=click.Path(allow_dash=True),
              help="output image (one input; '-' writes PNG to standard output) or directory; "
                   "the extension picks the format: .png .tif .webp (lossless) .bmp")
@click.option("--force-model", metavar="ID",
              help="decode with this model instead of the one the file names (to study "
                   "catastrophic forgetting; the result is usually garbage)")
@MAX_PIXELS
@QUIET
@VERBOSE
@DEVICE
def decode(files, output, force_model, max_pixels, quiet, verbose, device):
    """Decompress .nic FILES ('-' reads stdin) to PNG, TIFF, WebP (lossless) or BMP.

    \b
    Examples:
      nicodec decode photo.nic                       # writes photo.png beside it
      nicodec decode photo.nic -o photo.tif
      nicodec decode - -o - < photo.nic > photo.png
      nicodec decode out/*.nic -o decoded/
    """
    import time

    from nicodec import container, image, registry

    image.set_max_pixels(max_pixels)
    _check_inputs(files)
    if output is None:  # `decode photo.png` is a wrong input, not an output to protect
        for src in files:
            if src != "-" and Path(src).with_suffix(".png") == Path(src):
                with _existing_file(src).open("rb") as f:
                    try:
                        container.check_magic(f.read(4))
                    except NicodecError as e:
                        raise NicodecError(f"{src}: {e}") from None
    dev = registry.pick_device(device)
    targets = _stdio_outputs(files, output, ".png")
    for dst in targets:
        if dst != "-":
            image.output_format(dst)  # a lossy or unknown extension is refused up front
    reg = registry.Registry()

    def decode_one(src, dst):
        t0 = time.perf_counter()
        data = sys.stdin.buffer.read() if src == "-" else _read(src)
        header, payload = container.parse(data)
        codec = (reg.codec_by_id(force_model, dev) if force_model
                 else reg.codec_for_header(header, dev))
        rgb = codec.decode(header, payload, strict=not force_model)
        _write(dst, image.encode_image(rgb, header.channels, dst))
        dt = time.perf_counter() - t0
        if not quiet:
            err.print(f"{src} -> {dst}  {header.width}x{header.height}  {dt:.2f} s  "
                      f"({codec.name} q{header.quality})", markup=False)
        if verbose:
            _print_models(data)

    _for_each(list(zip(files, targets)), "decoding", quiet, decode_one)


def _existing_file(path: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise NicodecError(f"{p}: no such file")
    if p.is_dir():
        raise NicodecError(f"{p}: is a directory")
    return p


def _read(path: str) -> bytes:
    return _existing_file(path).read_bytes()


@main.command()
@click.argument("file", type=click.Path(allow_dash=True))
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def info(file, as_json):
    """Show the header of a .nic FILE and whether its models are installed here.

    \b
    Examples:
      nicodec info photo.nic
      nicodec info photo.nic --json | jq .base_model
      nicodec encode photo.png -o - | nicodec info -
    """
    import json

    from nicodec import api

    data = sys.stdin.buffer.read() if file == "-" else _read(file)
    try:
        d = api.info(data)
    except NicodecError as e:
        raise NicodecError(f"{file}: {e}") from None
    base = d["base_model"]
    if as_json:
        click.echo(json.dumps(d, indent=1))
        return
    rows = [("file", file), ("format version", d["version"]), ("size", f"{d['width']}x"
            f"{d['height']}"), ("colour", "greyscale" if d["channels"] == 1 else "RGB"),
            ("quality", d["quality"])]
    if d["step"]:
        from nicodec.hyperprior import step_size

        rows.append(("grid", f"step exponent {d['step']} (latents on a grid of "
                             f"{step_size(d['step']):.3f})"))
    rows += [("bytes", f"{d['file_bytes']:,} ({d['bpp']:.4f} bpp)"),
            ("entropy coder", f"{d['coder']} {d['coder_version']}"),
            ("base model", d["base_id"] + (f"  generation {base['generation']}, "
                                           f"installed: {base['file']}" if base["installed"]
                                           else "  NOT INSTALLED")),
            ("adapter", "none (base codec)" if not d["adapter_id"] else
             d["adapter_id"] + ("  installed: " + d["adapter"]["name"]
                                if d["adapter"]["installed"] else "  NOT INSTALLED"))]
    for k, v in rows:
        out.print(f"{k:15s} {v}", markup=False)


@main.command()
@click.argument("folder", type=click.Path())
@click.option("--name", required=True, help="name of the new domain (used as --domain NAME)")
@click.option("--method", type=click.Choice(methods.names()), default=None,
              help="[default: cawf, or --init's]")
@click.option("--custom-filters", "k", type=click.IntRange(1, 64), default=None,
              help="CAwF: extra filters per conv layer  [default: 16, or --init's; more "
                   "than --init's grows it: the new filters start beside the trained ones]")
@click.option("--init", "init", metavar="FILE|NAME",
              help="continue training this adaptation (a file, or an installed name) instead "
                   "of starting from the base codec; a CAwF adapter made on an older base of "
                   "a quality goes on training on the newest one; it is not modified (the "
                   "result gets new IDs)")
@click.option("--channel-affine/--no-channel-affine", default=None,
              help="CAwF: also a per-channel scale and bias after every widened convolution "
                   "(+1,126 parameters at K=16) [default: on]; --no-channel-affine gives the "
                   "paper's adapter (docs/experiments.md compares them)")
@click.option("--qualities", callback=_qualities,
              help="comma-separated, e.g. 1,3  [default: every quality]")
@click.option("--steps", type=click.IntRange(1), default=1000, show_default=True,
              help="training steps per quality")
@click.option("--synthesis-steps", type=click.IntRange(0),
              help="then this many steps tuning only the decoder side on rounded latents, as "
                   "it decodes them (file sizes stay as they are)  [default: a quarter of "
                   "--steps]")
@click.option("--hyperprior-steps", type=click.IntRange(0),
              help="then this many steps training a hyperprior that codes the adaptation's "
                   "latents (smaller files, same pixels; kept only if it beats the "
                   "adaptation's own tables); 0: none  [default: --steps, at least 2000, "
                   "when the base has a hyperprior]")
@click.option("--holdout", type=click.FloatRange(0.01, 0.9), default=0.2, show_default=True,
              help="fraction of the images held out for evaluation")
@click.option("--batch", type=click.IntRange(1), default=8, show_default=True)
@click.option("--lr", type=click.FloatRange(0, min_open=True),
              help="learning rate [default: 5e-4]")
@DISTORTION
@MIXED_QUANTIZATION
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="write the adaptation file here instead of installing it")
@DEVICE
def adapt(folder, name, method, k, init, channel_affine, qualities, steps, synthesis_steps,
          hyperprior_steps, holdout, batch, lr, distortion, mixed_quantization, output, device):
    """Adapt the codec to the images under FOLDER without forgetting (CAwF by default).

    \b
    Examples:
      nicodec adapt ./my_photos --name personal --steps 3000
      nicodec encode new.png --domain personal       # files name the adapter; old ones
                                                     # keep decoding with the base codec
      nicodec adapt ./scans --name scans -o scans.safetensors   # a file to share
      nicodec adapt ./scans --name scans2 --init scans --steps 4000   # train it further
    """
    from rich.table import Table

    from nicodec import registry
    from nicodec.adapt import adapt as run_adapt

    dev = registry.pick_device(device)
    reg = registry.Registry()
    if name in {m.name for m in reg.packages()} and not output:
        raise NicodecError(f"an adaptation named {name!r} is installed already; remove it "
                           f"first ('nicodec models remove {name}') or pick another name")
    res = run_adapt(Path(folder), name=name, method=method, k=k, qualities=qualities,
                    steps=steps, holdout=holdout, device=dev, batch=batch, lr=lr,
                    out_path=Path(output) if output else None, reg=reg,
                    log=lambda m: out.print(m, markup=False), channel_affine=channel_affine,
                    synthesis_steps=synthesis_steps, init=init, distortion=distortion,
                    mixed_quantization=mixed_quantization, hyperprior_steps=hyperprior_steps)
    if res is None:  # a rank other than 0 under torchrun: rank 0 reports
        return
    t = Table(title=f"held-out images ({res['held_out']}): base codec vs '{name}'")
    for col in ("quality", "base bpp", "base PSNR", f"{name} bpp", f"{name} PSNR", "ID"):
        t.add_column(col, justify="right")
    for r in res["rows"]:
        t.add_row(str(r["quality"]), f"{r['base_bpp']:.4f}", f"{r['base_psnr']:.2f}",
                  f"{r['bpp']:.4f}", f"{r['psnr']:.2f}",
                  res["meta"].qualities[r["quality"]].id)
    out.print(t)
    out.print("BD-rate against the base codec: " + _bd_text(res) +
              ("" if res.get("bd_psnr") is None else f"; BD-PSNR {res['bd_psnr']:+.2f} dB"),
              markup=False)
    if output and Path(output).resolve().parent == reg.dir.resolve():
        command = "nicodec " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        registry.record_package(Path(output), command, reg.dir)
        out.print(f"recorded {Path(output).name} in {reg.dir / 'manifest.json'}", markup=False)
    out.print(f"saved {res['path']}; use it with: nicodec encode IMG --domain {name}",
              markup=False)


def _bd_text(res: dict) -> str:
    """'+1.23 %', or a bound ('<= -38.58 % (a bound: ...)'), or 'n/a'."""
    if res.get("bd_rate") is not None:
        return f"{res['bd_rate']:+.2f} %"
    if res.get("bd_rate_bound") is not None:
        return (f"<= {res['bd_rate_bound']:+.2f} % (a bound: too little PSNR overlap for a "
                f"BD-rate, and the new curve starts above the other)")
    return "n/a (needs two or more qualities whose PSNR ranges overlap by 0.5 dB)"


@main.command("eval")
@click.argument("folder", type=click.Path())
@click.option("--domain", "domains", multiple=True, default=["photo"], show_default=True,
              help="codec to evaluate (repeatable); 'all' = base + every installed adapter")
@click.option("--baselines", default="jpeg2000", show_default=True,
              help="comma-separated: jpeg2000, jpeg, jpeg444, webp (or 'none')")
@click.option("--qualities", callback=_qualities,
              help="comma-separated, e.g. 1,3  [default: every quality]")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="write results")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="RD curves (PNG)")
@click.option("--per-image", is_flag=True, help="also print every image's numbers")
@click.option("-e", "--effort", "efforts", callback=_efforts, default="1", show_default=True,
              help="encoder effort(s), comma-separated (e.g. 1,3): one curve per domain "
                   "and effort; the files are what `encode --effort` writes")
@click.option("--step", "steps", callback=_steps, default="auto", show_default=True,
              help="quantisation grid(s), comma-separated (e.g. auto,0): one curve each; "
                   "the files are what `encode --step` writes")
@DEVICE
def eval_cmd(folder, domains, baselines, qualities, json_path, plot_path, per_image, efforts,
             steps, device):
    """Rate-distortion curves (bpp, PSNR, MS-SSIM) and BD-rates on the images in FOLDER.

    \b
    Baselines, as their users run them:
      jpeg2000  OpenJPEG, irreversible 9/7, mct=1 (RGB->YCbCr), rate mode
      jpeg      libjpeg 4:2:0, optimised Huffman tables
      jpeg444   libjpeg 4:4:4, optimised Huffman tables
      webp      libwebp lossy, method 6 (cwebp -m 6)

    \b
    Examples:
      nicodec eval ./test_images --baselines jpeg2000,webp --plot rd.png
      nicodec eval ./screens --domain photo --domain screen --json screens.json
      nicodec eval ./photos --effort 1,3 --baselines jpeg2000,webp
      nicodec eval ./photos --step auto,0     # per-image grids against the unit grid
    """
    import json

    from rich.table import Table

    from nicodec import evaluate, image, registry

    reg = registry.Registry()
    if "all" in domains:
        domains = ["photo"] + [m.name for m in reg.packages(newest_only=True)]
    for d in domains:
        if d != "photo":
            reg.find_package(d)
    kinds = [] if baselines.strip() in ("", "none") else \
        [b.strip() for b in baselines.split(",")]
    unknown = [b for b in kinds if b not in evaluate.BASELINES]
    if unknown:
        raise NicodecError(f"unknown baseline {unknown[0]!r} (use "
                           f"{', '.join(evaluate.BASELINES)})")
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from rich.progress import TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=err, transient=True) as bar:
        task = bar.add_task("evaluating", total=None)

        def progress(done, total, label):
            bar.update(task, completed=done, total=total, description=f"evaluated {label}")
        res = evaluate.evaluate(Path(folder), list(domains), kinds, qualities,
                                device=registry.pick_device(device), reg=reg,
                                progress=progress, efforts=efforts, steps=steps)
    t = Table(title=f"{folder}: {res['images']} images")
    for col in ("codec", "setting", "bpp", "PSNR dB", "MS-SSIM"):
        t.add_column(col, justify="right")
    for c in res["curves"]:
        for p in c["points"]:
            t.add_row(c["name"], p["setting"], f"{p['bpp']:.4f}", f"{p['psnr']:.2f}",
                      "-" if p["ms_ssim"] is None else f"{p['ms_ssim']:.4f}")
            if per_image:
                for im in p["images"]:
                    t.add_row("", im["image"], f"{im['bpp']:.4f}", f"{im['psnr']:.2f}",
                              "-" if im["ms_ssim"] is None else f"{im['ms_ssim']:.4f}")
    out.print(t)
    for cmp_ in res["comparisons"]:
        bdp = cmp_["bd_psnr"]
        out.print(f"BD-rate of {cmp_['test']} vs {cmp_['reference']}: " + _bd_text(cmp_) +
                  ("  (BD-PSNR n/a)" if bdp is None else f"  (BD-PSNR {bdp:+.3f} dB)") +
                  (f"  [{cmp_['note']}]" if "note" in cmp_ else ""), markup=False)
    if json_path:
        image.atomic_write(Path(json_path), json.dumps(res, indent=1).encode())
    if plot_path:
        folder_path = Path(folder).resolve()
        evaluate.plot(res["curves"], Path(plot_path), f"{folder_path.parent.name}/{folder_path.name}")


ALL_GENERATIONS = click.option("--all", "show_all", is_flag=True,
                               help="also list older model generations")


@main.group(invoke_without_command=True, cls=Cli)
@ALL_GENERATIONS
@click.pass_context
def models(ctx, show_all):
    """List, export, import and remove models and adapters.

    \b
    Example:
      nicodec models --all        # every generation, old ones included
    """
    if ctx.invoked_subcommand is None:
        _list_models(show_all)


def _list_models(show_all: bool = False):
    from rich.table import Table

    from nicodec import registry

    reg = registry.Registry()
    # what encoding uses: per quality the newest base (a generation may renew only some)
    current = {m.id for m in reg.base_set()}
    t = Table(title="installed models" + ("" if show_all else
                                          " (what encoding uses: the newest of each quality;"
                                          " --all for older ones)"))
    for col in ("name", "quality", "ID", "generation", "method", "parameters", "file size",
                "where"):
        t.add_column(col)
    hidden = 0

    def order(m):  # those encoding uses first, by quality; then older ones, newest first
        return (0, 0, m.quality) if m.id in current else (1, -m.generation, m.quality)

    for m in sorted(reg.bases(), key=order):
        if not (show_all or m.id in current):
            hidden += 1
            continue
        size = (reg.dir / m.file).stat().st_size
        t.add_row(m.domain, str(m.quality), m.id, str(m.generation),
                  "base + " + " + ".join(m.arch.split("+")[1:]) if "+" in m.arch else "base",
                  f"{m.parameters:,}", f"{size / 1e6:.2f} MB", "shipped")
    encoding = {m.path for m in reg.packages(newest_only=True)}  # what --domain NAME takes
    for meta in sorted(reg.packages(), key=lambda m: (m.name, -m.generation)):
        # a user's adapter on an old base is listed all the same: it is what encodes NAME;
        # a shipped one that a retrained one of its name superseded only decodes old files
        if not (show_all or not meta.shipped or meta.path in encoding):
            hidden += len(meta.qualities)
            continue
        size = meta.path.stat().st_size / len(meta.qualities)
        for q, info in sorted(meta.qualities.items()):
            method = methods.get(meta.method).describe(meta.k, info)
            if info.training.get("hyperprior_steps"):
                method += " + hyperprior"
            if info.training.get("context_steps"):
                method += " + context"
            params = info.training.get("parameters")
            # per quality, the generation of the base it extends (a package may span two)
            generation = reg.base_generation(info.base_id) or meta.generation
            t.add_row(meta.name, str(q), info.id, str(generation or "?"),
                      method, f"{params:,}" if params else "-", f"{size / 1e6:.2f} MB",
                      "shipped" if meta.shipped else "user")
    out.print(t)
    if hidden:
        out.print(f"{hidden} model(s) of older generations or superseded adapters are installed "
                  "too; they decode the files made with them (nicodec models --all)",
                  markup=False)


@models.command("list")
@ALL_GENERATIONS
def models_list(show_all):
    """List base models and adapters (the default).

    \b
    Example:
      nicodec models list --all                      # older generations too
    """
    _list_models(show_all)


@models.command("export")
@click.argument("name")
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True)
def models_export(name, output):
    """Write the adaptation NAME to a file others can import.

    \b
    Example:
      nicodec models export personal -o personal.safetensors
    """
    from nicodec import image, registry

    meta = registry.Registry().find_package(name)
    image.atomic_write(Path(output), meta.path.read_bytes())
    out.print(f"exported {name} to {output}", markup=False)


@models.command("import")
@click.argument("file", type=click.Path())
def models_import(file):
    """Validate an adaptation FILE and install it (refuses anything malformed).

    \b
    Example:
      nicodec models import personal.safetensors
    """
    import hashlib

    from nicodec import image, modelfile, package, registry

    path = _existing_file(file)
    modelfile.check_regular(path)
    data = path.read_bytes()
    reg = registry.Registry()
    # the hash pins the bytes validated to the bytes installed
    meta, _ = package.validate(path, reg.base_ids(), hashlib.sha256(data).hexdigest(),
                               qualities=set(reg.qualities()))
    if meta.name in {m.name for m in reg.packages()}:
        raise NicodecError(f"an adaptation named {meta.name!r} is installed already")
    dst = registry.user_adapters_dir() / f"{meta.name}.safetensors"
    dst.parent.mkdir(parents=True, exist_ok=True)
    image.atomic_write(dst, data)
    out.print(f"imported {meta.name} ({meta.method}, qualities "
              f"{', '.join(map(str, sorted(meta.qualities)))}) -> {dst}", markup=False)


@models.command("remove")
@click.argument("name")
def models_remove(name):
    """Uninstall the user adaptation NAME (its files can no longer be decoded here).

    \b
    Example:
      nicodec models remove personal
    """
    from nicodec import registry

    reg = registry.Registry()
    if name in {m.domain for m in reg.bases()}:
        raise NicodecError(f"{name!r} is the base codec: it ships with nicodec and cannot be "
                           "removed")
    meta = reg.find_package(name)
    if meta.shipped:
        raise NicodecError(f"{name!r} ships with nicodec and cannot be removed")
    meta.path.unlink()
    out.print(f"removed {name}", markup=False)


@main.command()
@click.option("--domain", default="photo", show_default=True, help="training domain")
@click.option("-q", "--quality", type=int, required=True, callback=_quality)
@click.option("--steps", type=int, default=5000, show_default=True,
              help="the run's total length (a resumed run continues to it)")
@click.option("--batch", type=int, default=8, show_default=True, help="crops per process")
@click.option("--crop", type=click.IntRange(min=16), default=128, show_default=True,
              callback=_multiple_of_16,
              help="side of the square training crops in pixels (a multiple of 16)")
@click.option("--lr", type=float, default=1e-4, show_default=True)
@click.option("--lr-drop-at", type=float, default=0.8, show_default=True,
              help="fraction of the steps after which the learning rate is divided by 3")
@click.option("--init", "init_from", type=click.Path(exists=True, dir_okay=False),
              help="warm-start from a model file; a snapshot from runs/ resumes at its step")
@click.option("--generation", type=int, default=None,
              help="model generation to export as (default: a new one, after the newest "
                   "installed; an installed model is never replaced)")
@click.option("--runs", type=click.Path(file_okay=False), default="runs", show_default=True,
              help="checkpoints, snapshots and the test-set curve")
@click.option("--ckpt-every", type=int, default=2000, show_default=True)
@click.option("--synthesis-only", is_flag=True,
              help="tune only the decoder's synthesis transform, on rounded latents as it "
                   "decodes them; the encoder and entropy model stay frozen, so file sizes "
                   "do not change (a last stage after --init)")
@click.option("--hyperprior", is_flag=True,
              help="train the transforms together with a mean-scale hyperprior, the "
                   "entropy model they will be coded with (a new one, or --init's: a model "
                   "file with a hyperprior always trains this way)")
@MIXED_QUANTIZATION
@DISTORTION
@DEVICE
def train(domain, quality, steps, batch, crop, lr, lr_drop_at, init_from, generation, runs,
          ckpt_every, synthesis_only, hyperprior, mixed_quantization, distortion, device):
    """Train a base model for DOMAIN at QUALITY, then export it to the model registry.

    \b
    Example (resumes from runs/ when interrupted):
      nicodec train --domain photo -q 3 --steps 100000
    On N processes or GPUs (PyTorch DDP; rank 0 writes):
      torchrun --nproc_per_node N -m nicodec.cli train --domain photo -q 3 --steps 100000
    """
    from nicodec import basetrain, registry

    run = basetrain.BaseRun(domain=domain, quality=quality, steps=steps,
                            generation=generation or registry.next_generation(), batch=batch,
                            crop=crop,
                            lr=lr, lr_drop_at=lr_drop_at,
                            init=Path(init_from) if init_from else None, runs=Path(runs),
                            ckpt_every=ckpt_every, synthesis_only=synthesis_only,
                            distortion=distortion, mixed_quantization=mixed_quantization,
                            hyperprior=hyperprior)
    command = "nicodec " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    entry = basetrain.train_base(run, device=registry.pick_device(device), command=command,
                                 log=out.print)
    if entry is not None:
        out.print(f"exported {entry.file} id {entry.id}")


if __name__ == "__main__":
    main()
