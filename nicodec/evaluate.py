"""``nicodec eval``: rate-distortion curves of codecs and baselines on a folder of images.

Each curve is a list of points, one per setting (nicodec quality, or a baseline setting),
averaged over the images: bpp from real file bytes, RGB PSNR, MS-SSIM. Any two curves are
compared with the Bjøntegaard delta rate and delta PSNR.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from nicodec import baselines, container, image, metrics
from nicodec.registry import Registry

JPEG2000_BPPS = (0.08, 0.15, 0.25, 0.4, 0.6, 0.9, 1.3)
QUALITY_SWEEP = (5, 10, 20, 35, 50, 70, 85, 95)
BASELINES = tuple(baselines.SETTINGS)  # jpeg2000, jpeg (4:2:0), jpeg444, webp


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float | None:
    """MS-SSIM (0..1) of two uint8 RGB images; None when too small for 5 scales."""
    from pytorch_msssim import ms_ssim as _ms_ssim

    if min(a.shape[:2]) <= 160:
        return None
    ta = torch.from_numpy(np.require(a, requirements=["C", "W"])).permute(2, 0, 1)[None]
    tb = torch.from_numpy(np.require(b, requirements=["C", "W"])).permute(2, 0, 1)[None]
    return float(_ms_ssim(ta.float(), tb.float(), data_range=255))


def _point(label: str, per_image: list[dict]) -> dict:
    ms = [p["ms_ssim"] for p in per_image if p["ms_ssim"] is not None]
    return {"setting": label, "bpp": float(np.mean([p["bpp"] for p in per_image])),
            "psnr": float(np.mean([p["psnr"] for p in per_image])),
            "ms_ssim": float(np.mean(ms)) if ms else None, "images": per_image}


def _measure(name: str, rgb: np.ndarray, n_bytes: int, rec: np.ndarray,
             with_ms_ssim: bool = True) -> dict:
    return {"image": name, "bpp": metrics.bpp(n_bytes, rgb.shape[1], rgb.shape[0]),
            "psnr": metrics.psnr(rgb, rec),
            "ms_ssim": ms_ssim(rgb, rec) if with_ms_ssim else None}


def codec_point(codec, imgs: list[tuple[str, np.ndarray]], label: str,
                with_ms_ssim: bool = True, effort: int = 1, step: int | str = "auto") -> dict:
    """Encode (at encoder ``effort``, on grid ``step``: what ``nicodec encode`` writes by
    default) and decode every image with ``codec`` (real file bytes) and average."""
    from nicodec import effort as effort_

    per = []
    for name, rgb in imgs:
        blob = effort_.encode(codec, rgb, level=effort, step=step)
        rec = codec.decode(*container.parse(blob))
        per.append(_measure(name, rgb, len(blob), rec, with_ms_ssim))
    return _point(label, per)


def _no_tick(label: str) -> None:
    pass


def curve_name(domain: str, effort: int = 1, step: int | str = "auto") -> str:
    """``nicodec:<domain>``, with ``@effort<N>`` when the encoder works harder than 1 and
    ``@step<E>`` on a fixed grid (``@step0``: the unit grid)."""
    return (f"nicodec:{domain}" + (f"@effort{effort}" if effort > 1 else "")
            + ("" if step == "auto" else f"@step{step}"))


def nicodec_curve(reg: Registry, domain: str, imgs: list[tuple[str, np.ndarray]],
                  qualities, device: str, tick=_no_tick, effort: int = 1,
                  step: int | str = "auto") -> dict:
    name = curve_name(domain, effort, step)
    points = []
    for q in qualities:
        points.append(codec_point(reg.codec(quality=q, domain=domain, device=device), imgs,
                                  f"q{q}", effort=effort, step=step))
        tick(f"{name} q{q}")
    return {"name": name, "points": points}


def baseline_curve(kind: str, imgs: list[tuple[str, np.ndarray]],
                   with_ms_ssim: bool = True, tick=_no_tick) -> dict:
    if kind not in BASELINES:
        raise ValueError(kind)
    settings = JPEG2000_BPPS if kind == "jpeg2000" else QUALITY_SWEEP
    fn = getattr(baselines, kind)
    points = []
    for s in settings:
        per = []
        for name, rgb in imgs:
            n, rec = fn(rgb, s)
            per.append(_measure(name, rgb, n, rec, with_ms_ssim))
        points.append(_point(f"{'bpp' if kind == 'jpeg2000' else 'q'}={s}", per))
        tick(f"{kind} {points[-1]['setting']}")
    return {"name": kind, "points": points}


def compare(curves: list[dict]) -> list[dict]:
    """BD-rate and BD-PSNR of every curve against the first one; each is None (with a note
    saying why) when the curves do not overlap enough for it, independently of the other.
    Where BD-rate is None and the test curve starts above the reference's lowest PSNR,
    ``bd_rate_bound`` holds an upper bound on it."""
    ref = curves[0]
    out = []
    for c in curves[1:]:
        args = ([p["bpp"] for p in ref["points"]], [p["psnr"] for p in ref["points"]],
                [p["bpp"] for p in c["points"]], [p["psnr"] for p in c["points"]])
        row = {"reference": ref["name"], "test": c["name"]}
        notes = []
        for key, fn in (("bd_rate", metrics.bd_rate), ("bd_psnr", metrics.bd_psnr)):
            try:
                row[key] = fn(*args)
            except ValueError as e:
                row[key] = None
                notes.append(str(e))
        if row["bd_rate"] is None:
            try:  # the test curve may lie wholly above: then a bound still says something
                row["bd_rate_bound"] = metrics.bd_rate_bound(*args)
                notes.append("bd_rate_bound: an upper bound on the BD-rate, as the test "
                             "curve starts above the reference's lowest PSNR (see "
                             "metrics.bd_rate_bound)")
            except ValueError:
                pass
        if notes:
            row["note"] = "; ".join(notes)
        out.append(row)
    return out


def plot(curves: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=110)
    for c in curves:
        pts = sorted(c["points"], key=lambda p: p["bpp"])
        style = "o-" if c["name"].startswith("nicodec") else "s--"
        ax.plot([p["bpp"] for p in pts], [p["psnr"] for p in pts], style, label=c["name"],
                ms=4)
    ax.set_xlabel("bits per pixel")
    ax.set_ylabel("RGB PSNR (dB)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(path.name + ".part.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def evaluate(folder: Path, domains: list[str], baseline_kinds: list[str], qualities,
             device: str = "cpu", reg: Registry | None = None, progress=None,
             efforts=(1,), steps=("auto",)) -> dict:
    """RD curves of nicodec (each domain at each encoder effort and grid) and the
    baselines on every image in ``folder``, and their BD comparisons against the first curve.
    ``progress(done, total, label)`` follows each curve point."""
    from nicodec import effort as effort_
    from nicodec.data import list_images
    from nicodec.errors import NicodecError

    reg = reg or Registry()
    folder = Path(folder)
    if not folder.is_dir():
        raise NicodecError(f"{folder}: not a directory")
    files = list_images(folder)
    if not files:
        raise NicodecError(f"{folder}: no images found")
    imgs = [(f.name, image.load(f).rgb) for f in files]
    efforts = [effort_.effort(e).level for e in efforts]
    total = len(domains) * len(efforts) * len(steps) * len(qualities) + sum(
        len(JPEG2000_BPPS if b == "jpeg2000" else QUALITY_SWEEP) for b in baseline_kinds)
    done = [0]

    def tick(label: str) -> None:
        done[0] += 1
        if progress:
            progress(done[0], total, label)
    curves = [nicodec_curve(reg, d, imgs, qualities, device, tick, effort=e, step=s)
              for d in domains for e in efforts for s in steps]
    curves += [baseline_curve(b, imgs, tick=tick) for b in baseline_kinds]
    return {"folder": str(folder), "images": len(imgs), "curves": curves,
            "comparisons": compare(curves) if len(curves) > 1 else []}
