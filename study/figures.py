"""The study's figures (paper Figures 3 and 4)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nicodec import container, metrics
from study.engine import CAWF_AFFINE, Job, Lab
from study.sections import synthesis

def figure3(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    domains = list(result["curves"])
    fig, axes = plt.subplots(1, len(domains), figsize=(11, 4.2), dpi=100)
    styles = {"t1": "o-", "naive": "s-", "cawf": "^-", CAWF_AFFINE: "v-", "joint": "d:",
              "jpeg2000": "x--"}
    for ax, domain in zip(axes, domains):
        for method, curve in result["curves"][domain].items():
            pts = sorted(curve["points"], key=lambda p: p["bpp"])
            ax.plot([p["bpp"] for p in pts], [p["psnr"] for p in pts], styles[method],
                    label=method, ms=4)
        role = "source" if domain == domains[0] else "target"
        ax.set_title(f"{result['pair']}: {role} ({domain})")
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel("RGB PSNR (dB)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def figure4(lab: Lab, pair: tuple[str, str], path: Path, size: int = 192) -> dict:
    """Original, t1, t2 naive decoding the t1 bitstream, t2 naive, CAwF (on a source image),
    with |error| x 4 images below; at the second-lowest quality (q2)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    src, tgt = pair
    quality = lab.qualities[min(1, len(lab.qualities) - 1)]
    name, rgb = lab.tests(src)[0]
    size = min(size, *rgb.shape[:2])
    h, w = rgb.shape[:2]
    y0, x0 = (h - size) // 2, (w - size) // 2
    crop = np.ascontiguousarray(rgb[y0:y0 + size, x0:x0 + size])
    t1, t2 = lab.t1(src, quality), lab.codec(Job("naive", src, (tgt,)), quality)
    blob = t1.encode(crop)
    header, payload = container.parse(blob)
    panels = {"original": crop, "t1": t1.decode(header, payload),
              "t2 naive, t1 bits": synthesis(t2, t1, t1.latents(crop), size, size),
              "t2 naive": t2.decode(*container.parse(t2.encode(crop))),
              "CAwF (base path)": t1.decode(*container.parse(t1.encode(crop)))}
    fig, axes = plt.subplots(2, len(panels), figsize=(2.3 * len(panels), 4.8), dpi=100)
    psnrs = {}
    for i, (title, img) in enumerate(panels.items()):
        psnrs[title] = None if title == "original" else metrics.psnr(crop, img)
        axes[0, i].imshow(img)
        axes[0, i].set_title(title if psnrs[title] is None else
                             f"{title}\n{psnrs[title]:.1f} dB", fontsize=8)
        err = np.clip(np.abs(img.astype(int) - crop.astype(int)) * 4, 0, 255).astype(np.uint8)
        axes[1, i].imshow(err)
        for ax in axes[:, i]:
            ax.axis("off")
    fig.suptitle(f"{src}->{tgt}, q{quality}, {name} (bottom: |error| x 4)", fontsize=9)
    fig.tight_layout()
    _save(fig, path)
    return {"image": name, "quality": quality, "psnr": psnrs}


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    tmp = path.with_name(path.name + ".part.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


# ---------------------------------------------------------------------- report
