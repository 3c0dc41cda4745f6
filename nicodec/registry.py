"""The model registry: shipped base models in ``models/`` and the user's own in NICODEC_HOME.

A model file is safetensors holding the network weights and the frozen entropy tables
(``tables.*``, see :mod:`nicodec.entropy`); its metadata says what it is. A model's **ID** is
the first 4 bytes of the sha256 of its tensors (names, dtypes, shapes and bytes, in name
order): a content hash, never a position in a list. ``models/manifest.json`` lists each
shipped file with its ID, file sha256 (verified at load), quality, lambda, domain, parameter
count, training steps and the exact command that produced it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

import platformdirs

from nicodec import modelfile
from nicodec.container import NO_ADAPTER, Header, format_id
from nicodec import methods, package
from nicodec.errors import NicodecError
from nicodec.modelfile import (HYPER_PREFIX, TABLE_PREFIX, content_id, file_sha256,
                               hyper_tensors, split_tables)

if TYPE_CHECKING:  # the catalog part of this module runs without torch (nicodec info)
    from nicodec.codec import Codec
    from nicodec.entropy import LatentCoder
    from nicodec.inference import FrozenNet

MANIFEST = "manifest.json"


def _shipped_models() -> Path:
    """The shipped models: inside the installed package (a wheel carries them as
    ``nicodec/models``), else ``models/`` beside the package (a source checkout)."""
    inside = Path(__file__).resolve().parent / "models"
    return inside if (inside / MANIFEST).is_file() else inside.parent.parent / "models"


REPO_MODELS = _shipped_models()
# Model generations: 1 = the models of nicodec 0.1; 2 = trained long on more photos (0.2);
# 3 = generation 2 continued at a lower learning rate, adapters trained 2,000 steps per
# quality (0.3); 4 = generation 3 with a synthesis stage (the decoder tuned on rounded
# latents; q4 trained longer first), adapters with one too (0.4); 5 = generation 4 trained on
# the crops' geometric-mean MSE (``--distortion psnr``), then a synthesis stage (0.6); 6 =
# q4 alone, generation 5's q4 continued on 301 photos at a lower learning rate (0.11); 7 =
# generations 5 and 6's transforms, unchanged, with a hyperprior coding their latents
# (arch ``factorized+hyperprior``, :mod:`nicodec.hyperprior`; header coder 2) (0.14). New
# weights get new IDs and a new generation; every older generation stays shipped, so every
# file ever written still decodes. A generation need not renew every quality: generation G's
# model set is, per quality, the newest base of generation <= G (:meth:`Registry.find_base`).
# Encoding uses the newest base of each quality; ``nicodec train`` exports as a new
# generation after the newest installed one unless told otherwise (:func:`next_generation`),
# and never over a model file that files may already name (:func:`check_new_model`).
CURRENT_GENERATION = 8


def base_file_stem(domain: str, quality: int, generation: int) -> str:
    """``photo-q3`` (generation 1, as 0.1 named them), ``photo-g2-q3`` after that."""
    return f"{domain}-q{quality}" if generation == 1 else f"{domain}-g{generation}-q{quality}"


def next_generation(directory: Path | None = None) -> int:
    """The generation after the newest base model installed in ``directory`` (the
    registry's by default): what a new training run exports as, so that it never replaces
    a model that encoded files name."""
    return max((m.generation for m in Manifest.read(directory or models_dir()).bases),
               default=0) + 1


def check_new_model(domain: str, quality: int, generation: int, *,
                    directory: Path | None = None, same_model: bool = False) -> None:
    """Refuse to export ``domain`` q``quality`` as ``generation`` where a base model of
    that name is installed already: every file written with it names its ID, and would no
    longer decode. ``same_model``: the run continues that very model (a later stage from
    its file, or a resumed run that exported it), which may replace it."""
    directory = directory or models_dir()
    name = base_file_stem(domain, quality, generation) + ".safetensors"
    entry = next((m for m in Manifest.read(directory).bases if m.file == name), None)
    if entry is not None and not same_model:
        raise NicodecError(
            f"{directory / name} holds model {entry.id} (generation {generation}); replacing "
            f"it would stop every file written with it from decoding: export as a new "
            f"generation (--generation {next_generation(directory)}, the default)")


def pick_device(choice: str = "auto") -> str:
    """'auto' -> cuda when available, else cpu."""
    import torch

    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" and not torch.cuda.is_available():
        raise NicodecError("--device cuda: no CUDA device is available here")
    return choice


def home() -> Path:
    """The user's nicodec directory: $NICODEC_HOME, else the platform's user data dir."""
    env = os.environ.get("NICODEC_HOME")
    return Path(env) if env else Path(platformdirs.user_data_dir("nicodec"))


def user_adapters_dir() -> Path:
    return home() / "adapters"


def models_dir() -> Path:
    return Path(os.environ.get("NICODEC_MODELS", REPO_MODELS))


# --------------------------------------------------------------------------- export
def model_tensors(model) -> dict:
    """Weights + frozen entropy tables of a trained base model, ready to save: a
    :class:`~nicodec.network.FactorizedPrior`, or a
    :class:`~nicodec.network.JointCodec` (its transforms and tables, and its hyperprior
    under ``hyper.``)."""
    from nicodec.entropy import build_tables
    from nicodec.network import JointCodec

    joint = isinstance(model, JointCodec)
    codec = model.codec if joint else model
    eb = codec.entropy_bottleneck
    # a hyperprior was trained on q = round(y - median): re-fitting the medians here would
    # shift every symbol it predicts (0.14's q3/q4 lesson, there on z's medians)
    eb.update(force=True, update_quantiles=not joint)
    tensors = {k: v.detach().cpu().contiguous() for k, v in codec.state_dict().items()
               if not k.startswith("entropy_bottleneck._")}
    tensors |= {TABLE_PREFIX + k: v.contiguous() for k, v in build_tables(eb).items()}
    if joint:
        from nicodec.hyperprior import export_tensors

        tensors |= {HYPER_PREFIX + k: v for k, v in export_tensors(model.hyper).items()}
    return tensors


@dataclass(frozen=True)
class BaseModel:
    """One shipped base model, as ``models/manifest.json`` lists it."""

    file: str
    id: str  # content ID, 8 hex digits
    sha256: str  # of the file; verified whenever it is loaded
    domain: str
    quality: int
    lam: float  # "lambda" in the manifest
    generation: int = 1  # 0.1's entries have none: they are generation 1
    arch: str = "factorized"
    parameters: int = 0
    steps: int = 0
    train_images: int = 0
    command: str = ""  # the exact command that produced the file
    created: str = ""
    # a hyperprior model (arch "...+hyperprior"): the ID of the base whose transforms and
    # latents it keeps ("" for every other model)
    transforms: str = ""
    # the encoder's exchange rate when it picks a quantisation step per image (dB of mean
    # PSNR per bpp, measured on training photos: nicodec.quantstep); 0: unit grid only
    step_slope: float = 0.0
    step_slope_command: str = ""

    @classmethod
    def from_json(cls, d: dict) -> "BaseModel":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known}, lam=float(d["lambda"]))

    def to_json(self) -> dict:
        d = asdict(self)
        out = {"file": d.pop("file"), "id": d.pop("id"), "sha256": d.pop("sha256"),
               "kind": "base"}
        generation = d.pop("generation")
        if generation != 1:  # written as 0.1 wrote its entries
            out["generation"] = generation
        out |= {"arch": d.pop("arch"), "domain": d.pop("domain"), "quality": d.pop("quality"),
                "lambda": d.pop("lam")}
        if not d["transforms"]:
            del d["transforms"]
        if not d["step_slope"]:
            del d["step_slope"], d["step_slope_command"]
        return out | d


@dataclass(frozen=True)
class ShippedPackage:
    """One shipped adaptation package, as the manifest lists it (its file hash pins it)."""

    file: str
    name: str
    method: str
    k: int
    sha256: str
    qualities: dict  # quality (str) -> its metadata record, as in the package
    command: str = ""
    created: str = ""
    # quality (str) -> the encoder's exchange rate for its grids (dB per bpp, as a base
    # model's step_slope; only hyperprior adapters); the package file itself is hashed
    step_slopes: dict = field(default_factory=dict)
    step_slope_command: str = ""

    @classmethod
    def from_json(cls, d: dict) -> "ShippedPackage":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def to_json(self) -> dict:
        d = asdict(self)
        out = {"file": d["file"], "kind": "package", "name": self.name,
               "method": self.method, "k": self.k, "domain": self.name,
               "sha256": self.sha256, "qualities": self.qualities, "command": self.command,
               "created": self.created}
        if self.step_slopes:
            out |= {"step_slopes": self.step_slopes,
                    "step_slope_command": self.step_slope_command}
        return out


@dataclass
class Manifest:
    """``models/manifest.json``: every shipped file with its ID, hash and provenance."""

    bases: list[BaseModel] = field(default_factory=list)
    packages: list[ShippedPackage] = field(default_factory=list)
    format: int = 1

    @classmethod
    def read(cls, directory: Path) -> "Manifest":
        p = directory / MANIFEST
        if not p.exists():
            return cls()
        try:
            d = json.loads(p.read_text())
            entries = d["models"]
            return cls(bases=[BaseModel.from_json(e) for e in entries if e["kind"] == "base"],
                       packages=[ShippedPackage.from_json(e) for e in entries
                                 if e["kind"] == "package"], format=d["format"])
        except (ValueError, KeyError, TypeError) as e:
            raise NicodecError(f"{p}: malformed model manifest ({e})") from None

    def write(self, directory: Path) -> None:
        bases = sorted(self.bases, key=lambda m: (m.generation, m.domain, m.quality))
        doc = {"format": self.format,
               "models": [m.to_json() for m in bases] + [p.to_json() for p in self.packages]}
        modelfile.atomic_write(directory / MANIFEST, (json.dumps(doc, indent=1) + "\n").encode())

    def sha256_of(self, file: str) -> str | None:
        return next((m.sha256 for m in [*self.bases, *self.packages] if m.file == file), None)


def export_base(model, *, domain: str, quality: int, lam: float, steps: int,
                command: str, train_images: int, models_dir: Path | None = None,
                generation: int = CURRENT_GENERATION) -> BaseModel:
    """Freeze the entropy tables of a trained :class:`~nicodec.network.FactorizedPrior`,
    save ``<base_file_stem>.safetensors``, update the manifest."""
    from nicodec.network import count_parameters

    directory = models_dir or globals()["models_dir"]()
    directory.mkdir(parents=True, exist_ok=True)
    tensors = model_tensors(model)
    mid = format_id(content_id(tensors))
    arch = ("factorized+hyperprior" if hasattr(model, "hyper") else
            "factorized+affine" if model.affine else "factorized")
    meta = {"nicodec": "base", "arch": arch,
            "domain": domain, "quality": str(quality), "lambda": repr(lam), "id": mid}
    name = base_file_stem(domain, quality, generation) + ".safetensors"
    modelfile.save(tensors, directory / name, meta)
    entry = BaseModel(file=name, id=mid, sha256=file_sha256(directory / name), domain=domain,
                      quality=quality, lam=lam, generation=generation, arch=meta["arch"],
                      parameters=count_parameters(model), steps=steps,
                      train_images=train_images, command=command,
                      created=_dt.date.today().isoformat())
    with _manifest_lock(directory):  # runs of several qualities may export at once
        manifest = Manifest.read(directory)
        manifest.bases = [m for m in manifest.bases if m.file != name] + [entry]
        manifest.write(directory)
    return entry


def set_step_slope(model_id: str, slope: float, command: str,
                   directory: Path | None = None) -> BaseModel | ShippedPackage:
    """Record the ``step_slope`` (:mod:`nicodec.quantstep`) of a base model or of one quality
    of a shipped adaptation package (``model_id``: that quality's ID), and the command that
    measured it, in the manifest of ``directory`` (default: the installed models). Only the
    encoder reads it: every file decodes as before."""
    directory = directory or models_dir()
    slope = round(float(slope), 3)
    with _manifest_lock(directory):
        manifest = Manifest.read(directory)
        entry = next((m for m in manifest.bases if m.id == model_id), None)
        if entry is not None:
            new = replace(entry, step_slope=slope, step_slope_command=command)
            manifest.bases = [new if m is entry else m for m in manifest.bases]
        else:
            found = [(p, q) for p in manifest.packages for q, r in p.qualities.items()
                     if r.get("id") == model_id]
            if not found:
                raise NicodecError(f"no base model or shipped adapter {model_id} in "
                                   f"{directory}")
            entry, quality = found[-1]  # the one recorded last, where two hold the ID
            new = replace(entry, step_slopes=entry.step_slopes | {quality: slope},
                          step_slope_command=command)
            manifest.packages = [new if p is entry else p for p in manifest.packages]
        manifest.write(directory)
    return new


def record_package(path: Path, command: str, directory: Path | None = None) -> ShippedPackage:
    """Add a shipped adaptation package to the manifest of ``directory`` (default models/)."""
    directory = directory or REPO_MODELS
    meta = package.read_meta(path)
    entry = ShippedPackage(file=path.name, name=meta.name, method=meta.method, k=meta.k,
                           sha256=file_sha256(path),
                           qualities={str(q): r.to_json()
                                      for q, r in sorted(meta.qualities.items())},
                           command=command, created=meta.date)
    with _manifest_lock(directory):
        manifest = Manifest.read(directory)
        manifest.packages = [m for m in manifest.packages if m.file != path.name] + [entry]
        manifest.write(directory)
    return entry


@contextlib.contextmanager
def _manifest_lock(directory: Path):
    """An exclusive lock on ``directory``'s manifest for a read-modify-write."""
    import fcntl

    with open(directory / ".manifest.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- loading
def build_base(tensors: dict) -> tuple["FrozenNet", "LatentCoder"]:
    """Inference network + latent coder from loaded base-model tensors (a
    :class:`~nicodec.hyperprior.HyperCoder` when the file holds ``hyper.*`` tensors)."""
    from nicodec.hyperprior import entropy_coder
    from nicodec.inference import FrozenNet

    weights, tables = split_tables(tensors)
    try:
        net = FrozenNet.from_tensors(weights)
        return net, entropy_coder(tables, hyper_tensors(tensors))
    except KeyError as e:
        raise NicodecError(f"model file does not match the network (missing {e})") from None
    except ValueError as e:
        raise NicodecError(f"model file's hyperprior is not one this nicodec reads ({e})") from None


def _transform_parameters(entry: BaseModel, tensors: dict) -> int:
    """Parameters of a base model without its hyperprior (``entry``'s count when it has
    none)."""
    if not entry.transforms:
        return entry.parameters
    from nicodec.network import HyperPrior

    old = HyperPrior.from_tensors(hyper_tensors(tensors))
    return entry.parameters - sum(p.numel() for p in old.parameters())


def export_hyperprior(entry: BaseModel, tensors: dict, hyper, *, steps: int, command: str,
                      generation: int, models_dir: Path | None = None) -> BaseModel:
    """A new base model: ``entry``'s transforms and tables (``tensors``, its file's) plus a
    trained :class:`~nicodec.hyperprior.HyperPrior` that codes its latents. Saved as
    ``<base_file_stem>.safetensors`` of ``generation``, added to the manifest."""
    from nicodec.hyperprior import export_tensors

    directory = models_dir or globals()["models_dir"]()
    base = {k: v for k, v in tensors.items() if not k.startswith(HYPER_PREFIX)}
    out = base | {HYPER_PREFIX + k: v for k, v in export_tensors(hyper).items()}
    mid = format_id(content_id(out))
    # the transforms' own architecture, with this entropy model
    arch = entry.arch.split("+")[0] + "+hyperprior" + ("+context" if hasattr(hyper, "context")
                                                       else "")
    meta = {"nicodec": "base", "arch": arch, "domain": entry.domain,
            "quality": str(entry.quality), "lambda": repr(entry.lam), "id": mid,
            "transforms": entry.id}
    name = base_file_stem(entry.domain, entry.quality, generation) + ".safetensors"
    modelfile.save(out, directory / name, meta)
    new = BaseModel(file=name, id=mid, sha256=file_sha256(directory / name),
                    domain=entry.domain, quality=entry.quality, lam=entry.lam,
                    generation=generation, arch=arch,
                    parameters=_transform_parameters(entry, tensors)
                    + sum(p.numel() for p in hyper.parameters()),
                    steps=steps, train_images=entry.train_images, command=command,
                    created=_dt.date.today().isoformat(), transforms=entry.transforms or entry.id)
    with _manifest_lock(directory):
        manifest = Manifest.read(directory)
        manifest.bases = [m for m in manifest.bases if m.file != name] + [new]
        manifest.write(directory)
    return new


class Registry:
    """Resolves model IDs and (domain, quality) to loaded networks; loads each file once."""

    def __init__(self, models: Path | None = None):
        self.dir = models or models_dir()
        self.manifest = Manifest.read(self.dir)
        self._cache: dict = {}
        self._packages: list[package.PackageInfo] | None = None

    def bases(self) -> list[BaseModel]:
        return list(self.manifest.bases)

    def base_ids(self) -> set[str]:
        return {m.id for m in self.bases()}

    def check_new_file(self, path: Path) -> None:
        """Refuse to write a model or package to ``path`` where an installed base model or
        adaptation lives (shipped or the user's): every file written with it names its IDs
        and would no longer decode."""
        target = Path(path).resolve()
        installed = [(self.dir / m.file, f"base model {m.id}") for m in self.bases()]
        installed += [(meta.path, f"adaptation {meta.name!r}") for meta in self.packages()]
        for file, what in installed:
            if file.resolve() == target:
                raise NicodecError(f"{path} holds the installed {what}; replacing it would "
                                   f"stop every file written with it from decoding: write "
                                   f"a new file")

    def base_generation(self, base_id: str | None) -> int:
        """The generation of an installed base model; 0 for one not installed (or None)."""
        return next((m.generation for m in self.bases() if m.id == base_id), 0)

    def generations(self) -> list[int]:
        """The base-model generations installed, oldest first."""
        return sorted({m.generation for m in self.bases()})

    def lambda_for(self, quality: int) -> float:
        """The rate-distortion trade-off of a quality (the same in every generation)."""
        for m in self.bases():
            if m.quality == quality:
                return m.lam
        raise NicodecError(f"no base model has quality {quality} (qualities: "
                           f"{', '.join(map(str, self.qualities())) or 'none'})")

    def qualities(self) -> list[int]:
        return sorted({m.quality for m in self.bases()})

    def find_base(self, *, quality: int | None = None, domain: str = "photo",
                  model_id: str | None = None, generation: int | None = None) -> BaseModel:
        """A base model by ID, or by (domain, quality) in the model set of ``generation``
        (default: the newest). A generation may renew only some qualities (6 renewed q4), so
        generation G's set is, per quality, the newest base of generation <= G."""
        if model_id is None:
            found = [m for m in self.bases() if m.domain == domain and
                     m.quality == quality and (generation is None or m.generation <= generation)]
            if found:
                return max(found, key=lambda m: m.generation)
        for m in self.bases():
            if model_id is not None and m.id == model_id:
                return m
        if model_id is not None:
            raise NicodecError(f"model {model_id} is not installed (known base models: "
                               f"{', '.join(m.id for m in self.bases()) or 'none'})")
        where = "" if generation is None else f" of generation {generation} or older"
        raise NicodecError(f"no base model{where} for domain {domain!r} at quality {quality} "
                           f"in {self.dir}")

    def base_set(self, generation: int | None = None, domain: str = "photo") -> list[BaseModel]:
        """The base model of every quality, as generation ``generation`` (default: the
        newest) encodes with them; by quality."""
        return [self.find_base(quality=q, domain=domain, generation=generation)
                for q in self.qualities()]

    def base_tensors(self, entry: BaseModel) -> tuple[dict, dict]:
        """(tensors, metadata) of a shipped base model, its file hash verified; read once."""
        key = ("tensors", entry.id)
        if key not in self._cache:
            self._cache[key] = modelfile.load(self.dir / entry.file, entry.sha256)
        return self._cache[key]

    def load_base(self, entry: BaseModel,
                  device: str = "cpu") -> tuple["FrozenNet", "LatentCoder"]:
        """The inference network and latent coder of a base model."""
        key = (entry.id, device)
        if key not in self._cache:
            net, coder = build_base(self.base_tensors(entry)[0])
            self._cache[key] = (net.to(device), coder)
        return self._cache[key]

    def base_network(self, entry: BaseModel, device: str = "cpu"):
        """A base model as a trainable :class:`~nicodec.network.FactorizedPrior` (for
        adaptation and training; imports CompressAI)."""
        from nicodec.network import FactorizedPrior

        tensors, meta = self.base_tensors(entry)
        model = FactorizedPrior(affine=meta.get("arch") == "factorized+affine")
        weights = {k: v for k, v in tensors.items()
                   if not k.startswith((TABLE_PREFIX, HYPER_PREFIX))}
        model.load_state_dict(weights, strict=False)
        return model.to(device).eval()

    # ----------------------------------------------------------------------- packages
    def package_dirs(self) -> list[Path]:
        """Shipped packages (models/) and the user's own (NICODEC_HOME/adapters)."""
        return [self.dir, user_adapters_dir()]

    def packages(self, newest_only: bool = False) -> list[package.PackageInfo]:
        """Metadata of every installed adaptation package (cheap: headers only); each has
        ``generation``, that of the base models it was made on. A shipped name may exist in
        several generations; ``newest_only`` keeps the newest of each name (what encoding
        uses): the one on the newest base generation and, between shipped packages on the
        same generation, the one recorded last in the manifest (a retrained adapter)."""
        if self._packages is None:
            found: list[package.PackageInfo] = []
            for d in self.package_dirs():
                for path in sorted(d.glob("*.safetensors")) if d.is_dir() else []:
                    try:
                        meta = package.read_meta(path)
                    except NicodecError:
                        continue  # a base model file, or junk: not a package
                    found.append(meta.placed(
                        shipped=d == self.dir,
                        generation=max(self.base_generation(r.base_id)
                                   for r in meta.qualities.values())))
            self._packages = found
        if not newest_only:
            return self._packages
        recorded = {p.file: i for i, p in enumerate(self.manifest.packages)}

        def rank(meta: package.PackageInfo) -> tuple[int, int]:
            return meta.generation, recorded.get(meta.path.name, -1) if meta.shipped else -1

        newest: dict[str, package.PackageInfo] = {}
        for meta in self._packages:
            if meta.name not in newest or rank(meta) > rank(newest[meta.name]):
                newest[meta.name] = meta
        return list(newest.values())

    def find_package(self, name: str) -> package.PackageInfo:
        """The package ``--domain NAME`` encodes with: the newest generation of that name."""
        for meta in self.packages(newest_only=True):
            if meta.name == name:
                return meta
        names = ", ".join(["photo"] + [m.name for m in self.packages(newest_only=True)])
        raise NicodecError(f"unknown domain {name!r}: no adapter of that name is installed "
                           f"(installed: {names}); import one with 'nicodec models import FILE'")

    def package_tensors(self, meta: package.PackageInfo) -> dict:
        """The validated tensors of an installed package (shipped ones checked against the
        manifest's hash); cached."""
        key = ("package", str(meta.path))
        if key not in self._cache:
            sha256 = None
            if meta.shipped:  # shipped files are pinned by the manifest, like base models
                sha256 = self.manifest.sha256_of(meta.path.name)
                if sha256 is None:
                    raise NicodecError(f"{meta.path.name}: not listed in the manifest")
            self._cache[key] = package.validate(meta.path, self.base_ids(), sha256)[1]
        return self._cache[key]

    # ----------------------------------------------------------------------- codecs
    def codec(self, *, quality: int, domain: str = "photo", device: str = "cpu",
              generation: int | None = None) -> "Codec":
        """The codec that ``encode --domain DOMAIN -q QUALITY`` uses (the newest generation
        unless ``generation`` pins one; adapters: the newest of that name)."""
        if domain == "photo":
            return self._base_codec(self.find_base(quality=quality, domain="photo",
                                                   generation=generation), device)
        meta = self.find_package(domain)
        if quality not in meta.qualities:
            raise NicodecError(f"adapter {domain!r} has no quality {quality} (it has "
                               f"{', '.join(map(str, sorted(meta.qualities)))})")
        return self._package_codec(meta, quality, device)

    def codecs(self, *, quality: int, device: str = "cpu") -> list["Codec"]:
        """The base codec and every installed package that covers ``quality``."""
        out = [self.codec(quality=quality, device=device)]
        for meta in self.packages(newest_only=True):
            if quality in meta.qualities:
                out.append(self._package_codec(meta, quality, device))
        return out

    def codec_for_header(self, header: Header, device: str = "cpu") -> "Codec":
        """The codec that wrote a file, from the IDs in its header."""
        base_id, adapter_id = format_id(header.base_id), header.adapter_id
        if adapter_id != NO_ADAPTER:
            aid = format_id(adapter_id)
            found = self._find_package_id(aid, cawf=True, base_id=base_id)
            if found:
                meta, quality = found
                base_of = meta.qualities[quality].base_id
                if base_of != base_id:
                    raise NicodecError(f"adapter {aid} extends base {base_of}, but the file "
                                       f"names base {base_id}")
                return self._package_codec(meta, quality, device)
            raise NicodecError(f"this file needs adapter {aid}, which is not installed; get "
                               f"its adaptation file and run 'nicodec models import FILE'")
        return self.codec_by_id(base_id, device)

    def codec_by_id(self, model_id: str, device: str = "cpu") -> "Codec":
        """A complete codec (shipped base or fine-tuned package) by its ID."""
        for m in self.bases():
            if m.id == model_id:
                return self._base_codec(m, device)
        found = self._find_package_id(model_id, cawf=False)
        if found:
            return self._package_codec(*found, device)
        raise NicodecError(f"model {model_id} is not installed (installed: "
                           f"{', '.join(self.all_ids()) or 'none'})")

    def _find_package_id(self, model_id: str, cawf: bool | None = None,
                         base_id: str | None = None):
        """(package meta, quality) of an ID; ``cawf`` restricts to adapters / full codecs.
        An adapter's ID covers its own tensors only, so the same adapter may sit on two bases
        (trained alike on two generations that share their transforms): ``base_id`` prefers
        the one on that base."""
        found = []
        for meta in self.packages():
            if cawf is not None and methods.get(meta.method).extends_base != cawf:
                continue
            for quality, info in meta.qualities.items():
                if info.id == model_id:
                    found.append((meta, quality))
        on_base = [f for f in found if f[0].qualities[f[1]].base_id == base_id]
        return (on_base or found or [None])[0]

    def all_ids(self) -> list[str]:
        ids = sorted(self.base_ids())
        ids += [r.id for m in self.packages() for r in m.qualities.values()]
        return ids

    def _base_codec(self, entry: BaseModel, device: str) -> "Codec":
        from nicodec.codec import Codec

        model, coder = self.load_base(entry, device)
        return Codec(net=model, coder=coder, base_id=int(entry.id, 16),
                     adapter_id=NO_ADAPTER, quality=entry.quality, lam=entry.lam,
                     device=device, name=entry.domain, step_slope=entry.step_slope or None)

    def _package_codec(self, meta: package.PackageInfo, quality: int,
                       device: str) -> "Codec":
        from nicodec.codec import Codec
        from nicodec.hyperprior import entropy_coder

        key = ("codec", str(meta.path), quality, device)
        if key in self._cache:
            return self._cache[key]
        info = meta.qualities[quality]
        qt = package.quality_tensors(self.package_tensors(meta), quality)
        weights, tables = split_tables(qt)
        method = methods.get(meta.method)
        base = (self.base_tensors(self.find_base(model_id=info.base_id))[0]
                if method.extends_base else None)
        net = method.frozen_net(base, weights).to(device)
        base_id, adapter_id = method.header_ids(int(info.base_id or "0", 16),
                                                int(info.id, 16))
        codec = Codec(net=net, coder=entropy_coder(tables, hyper_tensors(qt)), base_id=base_id,
                      adapter_id=adapter_id, quality=quality, lam=info.lam,
                      device=device, name=meta.name,
                      step_slope=self._package_step_slope(meta, quality))
        self._cache[key] = codec
        return codec

    def _package_step_slope(self, meta: package.PackageInfo, quality: int) -> float | None:
        """A package's ``step_slope`` at ``quality``: a shipped one's from the manifest,
        else the one its own record holds (``adapt`` measures it since 0.19); None where
        neither has one (the unit grid)."""
        entry = next((p for p in self.manifest.packages if p.file == meta.path.name),
                     None) if meta.shipped else None
        if entry is not None and entry.step_slopes.get(str(quality)):
            return entry.step_slopes[str(quality)]
        return meta.qualities[quality].step_slope

    def describe_adapter(self, adapter_id: str) -> dict:
        """What ``info`` says about an adapter ID."""
        found = self._find_package_id(adapter_id)
        if found:
            meta, quality = found
            return {"installed": True, "id": adapter_id, "name": meta.name,
                    "method": meta.method, "quality": quality}
        return {"installed": False, "id": adapter_id}
