"""The model registry: shipped base models in ``models/`` and the user's own in NICODEC_HOME.

A model file is safetensors holding the network weights and the frozen entropy tables
(``tables.*``, see :mod:`nicodec.entropy`); its metadata says what it is. A model's **ID** is
the first 4 bytes of the sha256 of its tensors (names, dtypes, shapes and bytes, in name
order): a content hash, never a position in a list. ``models/manifest.json`` lists each
shipped file with its ID, file sha256 (verified at load), quality, lambda, domain, parameter
count, training steps and the exact command that produced it.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import platformdirs

from nicodec import modelfile
from nicodec.container import NO_ADAPTER, Header, format_id
from nicodec import methods, package
from nicodec.errors import NicodecError
from nicodec.modelfile import TABLE_PREFIX, content_id, file_sha256, split_tables

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
# Model generations: 1 = the models of nicodec 0.1; 2 = trained long on more photos. New
# weights get new IDs and a new generation; every older generation stays shipped, so every
# file ever written still decodes. Encoding uses the newest generation.
CURRENT_GENERATION = 2


def base_file_stem(domain: str, quality: int, generation: int) -> str:
    """``photo-q3`` (generation 1, as 0.1 named them), ``photo-g2-q3`` after that."""
    return f"{domain}-q{quality}" if generation == 1 else f"{domain}-g{generation}-q{quality}"


def generation_of(entry: dict) -> int:
    """A manifest entry's generation (entries written by 0.1 have none: 1)."""
    return int(entry.get("generation", 1))


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
    """Weights + frozen entropy tables of a trained base model, ready to save."""
    from nicodec.entropy import build_tables

    eb = model.entropy_bottleneck
    eb.update(force=True, update_quantiles=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()
               if not k.startswith("entropy_bottleneck._")}
    tensors |= {TABLE_PREFIX + k: v.contiguous() for k, v in build_tables(eb).items()}
    return tensors


def read_manifest(directory: Path) -> dict:
    p = directory / MANIFEST
    if not p.exists():
        return {"format": 1, "models": []}
    return json.loads(p.read_text())


def write_manifest(directory: Path, manifest: dict) -> None:
    modelfile.atomic_write(directory / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())


def export_base(model, *, domain: str, quality: int, lam: float, steps: int,
                command: str, train_images: int, models_dir: Path | None = None,
                generation: int = CURRENT_GENERATION) -> dict:
    """Freeze the entropy tables of a trained :class:`~nicodec.network.FactorizedPrior`,
    save ``<base_file_stem>.safetensors``, update the manifest."""
    from nicodec.network import count_parameters

    directory = models_dir or globals()["models_dir"]()
    directory.mkdir(parents=True, exist_ok=True)
    tensors = model_tensors(model)
    mid = format_id(content_id(tensors))
    meta = {"nicodec": "base", "arch": "factorized+affine" if model.affine else "factorized",
            "domain": domain, "quality": str(quality), "lambda": repr(lam), "id": mid}
    name = base_file_stem(domain, quality, generation) + ".safetensors"
    modelfile.save(tensors, directory / name, meta)
    entry = {
        "file": name, "id": mid, "sha256": file_sha256(directory / name), "kind": "base",
        "generation": generation,
        "arch": meta["arch"], "domain": domain, "quality": quality, "lambda": lam,
        "parameters": count_parameters(model), "steps": steps, "train_images": train_images,
        "command": command, "created": _dt.date.today().isoformat(),
    }
    manifest = read_manifest(directory)
    manifest["models"] = [m for m in manifest["models"] if m["file"] != name] + [entry]
    manifest["models"].sort(key=lambda m: (m["kind"] != "base", generation_of(m), m["domain"],
                                           m.get("quality", 0)))
    write_manifest(directory, manifest)
    return entry


def record_package(path: Path, command: str, directory: Path | None = None) -> dict:
    """Add a shipped adaptation package to the manifest of ``directory`` (default models/)."""
    directory = directory or REPO_MODELS
    meta = package.read_meta(path)
    entry = {"file": path.name, "kind": "package", "name": meta["name"],
             "method": meta["method"], "k": meta["k"], "domain": meta["name"],
             "sha256": file_sha256(path),
             "qualities": {str(q): v for q, v in sorted(meta["qualities"].items())},
             "command": command, "created": meta["date"]}
    manifest = read_manifest(directory)
    manifest["models"] = [m for m in manifest["models"] if m["file"] != path.name] + [entry]
    write_manifest(directory, manifest)
    return entry


# --------------------------------------------------------------------------- loading
def build_base(tensors: dict) -> tuple["FrozenNet", "LatentCoder"]:
    """Inference network + latent coder from loaded base-model tensors."""
    from nicodec.entropy import LatentCoder
    from nicodec.inference import FrozenNet

    weights, tables = split_tables(tensors)
    try:
        net = FrozenNet.from_tensors(weights)
    except KeyError as e:
        raise NicodecError(f"model file does not match the network (missing {e})") from None
    return net, LatentCoder(tables)


class Registry:
    """Resolves model IDs and (domain, quality) to loaded networks; loads each file once."""

    def __init__(self, models: Path | None = None):
        self.dir = models or models_dir()
        self.manifest = read_manifest(self.dir)
        self._cache: dict = {}
        self._packages: list[dict] | None = None

    def bases(self) -> list[dict]:
        return [m for m in self.manifest["models"] if m.get("kind") == "base"]

    def base_ids(self) -> set[str]:
        return {m["id"] for m in self.bases()}

    def generations(self) -> list[int]:
        """The base-model generations installed, oldest first."""
        return sorted({generation_of(m) for m in self.bases()})

    def lambda_for(self, quality: int) -> float:
        """The rate-distortion trade-off of a quality (the same in every generation)."""
        for m in self.bases():
            if m["quality"] == quality:
                return float(m["lambda"])
        raise NicodecError(f"no base model has quality {quality} (qualities: "
                           f"{', '.join(map(str, self.qualities())) or 'none'})")

    def qualities(self) -> list[int]:
        return sorted({m["quality"] for m in self.bases()})

    def find_base(self, *, quality: int | None = None, domain: str = "photo",
                  model_id: str | None = None, generation: int | None = None) -> dict:
        """A base model by ID, or by (domain, quality) in ``generation`` (default: the
        newest generation that has it)."""
        if model_id is None:
            found = [m for m in self.bases() if m["domain"] == domain and
                     m["quality"] == quality and generation in (None, generation_of(m))]
            if found:
                return max(found, key=generation_of)
        for m in self.bases():
            if model_id is not None and m["id"] == model_id:
                return m
        if model_id is not None:
            raise NicodecError(f"model {model_id} is not installed (known base models: "
                               f"{', '.join(m['id'] for m in self.bases()) or 'none'})")
        where = "" if generation is None else f" of generation {generation}"
        raise NicodecError(f"no base model{where} for domain {domain!r} at quality {quality} "
                           f"in {self.dir}")

    def base_tensors(self, entry: dict) -> tuple[dict, dict]:
        """(tensors, metadata) of a shipped base model, its file hash verified; read once."""
        key = ("tensors", entry["id"])
        if key not in self._cache:
            self._cache[key] = modelfile.load(self.dir / entry["file"], entry["sha256"])
        return self._cache[key]

    def load_base(self, entry: dict, device: str = "cpu") -> tuple["FrozenNet", "LatentCoder"]:
        """The inference network and latent coder of a base model."""
        key = (entry["id"], device)
        if key not in self._cache:
            net, coder = build_base(self.base_tensors(entry)[0])
            self._cache[key] = (net.to(device), coder)
        return self._cache[key]

    def base_network(self, entry: dict, device: str = "cpu"):
        """A base model as a trainable :class:`~nicodec.network.FactorizedPrior` (for
        adaptation and training; imports CompressAI)."""
        from nicodec.network import FactorizedPrior

        tensors, meta = self.base_tensors(entry)
        model = FactorizedPrior(affine=meta.get("arch") == "factorized+affine")
        weights = {k: v for k, v in tensors.items() if not k.startswith(TABLE_PREFIX)}
        model.load_state_dict(weights, strict=False)
        return model.to(device).eval()

    # ----------------------------------------------------------------------- packages
    def package_dirs(self) -> list[Path]:
        """Shipped packages (models/) and the user's own (NICODEC_HOME/adapters)."""
        return [self.dir, user_adapters_dir()]

    def packages(self, newest_only: bool = False) -> list[dict]:
        """Metadata of every installed adaptation package (cheap: headers only); each has
        ``generation``, that of the base models it was made on. A shipped name may exist in
        several generations; ``newest_only`` keeps the newest of each name (what encoding
        uses)."""
        if self._packages is None:
            gens = {m["id"]: generation_of(m) for m in self.bases()}
            found: list[dict] = []
            for d in self.package_dirs():
                for path in sorted(d.glob("*.safetensors")) if d.is_dir() else []:
                    try:
                        meta = package.read_meta(path)
                    except NicodecError:
                        continue  # a base model file, or junk: not a package
                    meta["shipped"] = d == self.dir
                    meta["generation"] = max(gens.get(i.get("base_id"), 0)
                                             for i in meta["qualities"].values())
                    found.append(meta)
            self._packages = found
        if not newest_only:
            return self._packages
        newest: dict[str, dict] = {}
        for meta in self._packages:
            if meta["name"] not in newest or \
                    meta["generation"] > newest[meta["name"]]["generation"]:
                newest[meta["name"]] = meta
        return list(newest.values())

    def find_package(self, name: str) -> dict:
        """The package ``--domain NAME`` encodes with: the newest generation of that name."""
        for meta in self.packages(newest_only=True):
            if meta["name"] == name:
                return meta
        names = ", ".join(["photo"] + [m["name"] for m in self.packages(newest_only=True)])
        raise NicodecError(f"unknown domain {name!r}: no adapter of that name is installed "
                           f"(installed: {names}); import one with 'nicodec models import FILE'")

    def _load_package(self, meta: dict) -> dict:
        key = ("package", str(meta["path"]))
        if key not in self._cache:
            sha256 = None
            if meta["shipped"]:  # shipped files are pinned by the manifest, like base models
                entry = next((m for m in self.manifest["models"]
                              if m["file"] == meta["path"].name), None)
                if entry is None:
                    raise NicodecError(f"{meta['path'].name}: not listed in the manifest")
                sha256 = entry["sha256"]
            self._cache[key] = package.validate(meta["path"], self.base_ids(), sha256)[1]
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
        if quality not in meta["qualities"]:
            raise NicodecError(f"adapter {domain!r} has no quality {quality} (it has "
                               f"{', '.join(map(str, sorted(meta['qualities'])))})")
        return self._package_codec(meta, quality, device)

    def codecs(self, *, quality: int, device: str = "cpu") -> list["Codec"]:
        """The base codec and every installed package that covers ``quality``."""
        out = [self.codec(quality=quality, device=device)]
        for meta in self.packages(newest_only=True):
            if quality in meta["qualities"]:
                out.append(self._package_codec(meta, quality, device))
        return out

    def codec_for_header(self, header: Header, device: str = "cpu") -> "Codec":
        """The codec that wrote a file, from the IDs in its header."""
        base_id, adapter_id = format_id(header.base_id), header.adapter_id
        if adapter_id != NO_ADAPTER:
            aid = format_id(adapter_id)
            found = self._find_package_id(aid, cawf=True)
            if found:
                meta, quality = found
                base_of = meta["qualities"][quality]["base_id"]
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
            if m["id"] == model_id:
                return self._base_codec(m, device)
        found = self._find_package_id(model_id, cawf=False)
        if found:
            return self._package_codec(*found, device)
        raise NicodecError(f"model {model_id} is not installed (installed: "
                           f"{', '.join(self.all_ids()) or 'none'})")

    def _find_package_id(self, model_id: str, cawf: bool | None = None):
        """(package meta, quality) of an ID; ``cawf`` restricts to adapters / full codecs."""
        for meta in self.packages():
            if cawf is not None and methods.get(meta["method"]).extends_base != cawf:
                continue
            for quality, info in meta["qualities"].items():
                if info["id"] == model_id:
                    return meta, quality
        return None

    def all_ids(self) -> list[str]:
        ids = sorted(self.base_ids())
        ids += [i["id"] for m in self.packages() for i in m["qualities"].values()]
        return ids

    def _base_codec(self, entry: dict, device: str) -> "Codec":
        from nicodec.codec import Codec

        model, coder = self.load_base(entry, device)
        return Codec(net=model, coder=coder, base_id=int(entry["id"], 16),
                     adapter_id=NO_ADAPTER, quality=entry["quality"], lam=entry["lambda"],
                     device=device, name=entry["domain"])

    def _package_codec(self, meta: dict, quality: int, device: str) -> "Codec":
        from nicodec.codec import Codec
        from nicodec.entropy import LatentCoder

        key = ("codec", str(meta["path"]), quality, device)
        if key in self._cache:
            return self._cache[key]
        info = meta["qualities"][quality]
        weights, tables = split_tables(
            package.quality_tensors(self._load_package(meta), quality))
        method = methods.get(meta["method"])
        base = (self.base_tensors(self.find_base(model_id=info["base_id"]))[0]
                if method.extends_base else None)
        net = method.frozen_net(base, weights).to(device)
        base_id, adapter_id = method.header_ids(int(info.get("base_id", "0"), 16),
                                                int(info["id"], 16))
        codec = Codec(net=net, coder=LatentCoder(tables), base_id=base_id,
                      adapter_id=adapter_id, quality=quality, lam=info["lambda"],
                      device=device, name=meta["name"])
        self._cache[key] = codec
        return codec

    def describe_adapter(self, adapter_id: str) -> dict:
        """What ``info`` says about an adapter ID."""
        found = self._find_package_id(adapter_id)
        if found:
            meta, quality = found
            return {"installed": True, "id": adapter_id, "name": meta["name"],
                    "method": meta["method"], "quality": quality}
        return {"installed": False, "id": adapter_id}
