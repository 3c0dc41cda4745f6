"""A committed bitstream that every future release must decode to the same pixels, with the
shipped models (and whatever shipped adapters sit beside them)."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file

from nicodec import container, modelfile, registry
from nicodec.network import ContextHyperPrior, HyperPrior
from nicodec.network import count_parameters

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture()
def shipped(monkeypatch, tmp_path):
    monkeypatch.delenv("NICODEC_MODELS", raising=False)
    monkeypatch.setenv("NICODEC_HOME", str(tmp_path))
    return registry.Registry()


def test_golden_bitstream_decodes_to_committed_pixels(shipped):
    meta = json.loads((GOLDEN / "golden.json").read_text())
    header, payload = container.parse((GOLDEN / meta["file"]).read_bytes())
    assert container.format_id(header.base_id) == meta["base_id"]
    pixels = shipped.codec_for_header(header).decode(header, payload)
    assert list(pixels.shape) == meta["shape"]
    assert hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest() == \
        meta["pixels_sha256"]


def test_base_encoder_output_is_unchanged(shipped):
    meta = json.loads((GOLDEN / "golden.json").read_text())
    src = np.asarray(Image.open(GOLDEN / meta["source"]).convert("RGB"))
    codec = shipped.codec(quality=3, generation=meta.get("generation", 1))
    assert codec.encode(src) == (GOLDEN / meta["file"]).read_bytes()


def test_shipped_models_match_manifest_and_paper_counts(shipped):
    bases = shipped.bases()
    assert shipped.qualities() == [1, 2, 3, 4]
    assert shipped.generations() == list(range(1, registry.CURRENT_GENERATION + 1))
    for gen in shipped.generations():  # each generation's set has every quality (raises if not)
        entries = shipped.base_set(generation=gen)
        assert [(m.quality, m.generation <= gen) for m in entries] == \
            [(1, True), (2, True), (3, True), (4, True)]
        assert gen in {m.generation for m in entries}  # and renews at least one
    assert sorted(m.quality for m in bases if m.generation == 1) == [1, 2, 3, 4]
    hyper = count_parameters(HyperPrior(m=64))
    ctx = count_parameters(ContextHyperPrior(m=64)) - hyper
    for m in bases:
        # the paper's 64-filter model; generation 7 adds a hyperprior on unchanged transforms,
        # generation 8 a context model on that
        assert m.parameters == 655_619 + (hyper if "+hyperprior" in m.arch else 0) + (
            ctx if m.arch.endswith("+context") else 0)
        if m.transforms:
            kept = shipped.find_base(model_id=m.transforms)
            assert kept.quality == m.quality and kept.arch == "factorized"
            assert m.arch in ("factorized+hyperprior", "factorized+hyperprior+context")
        shipped.load_base(m)  # verifies the file hash against the manifest
        tensors = load_file(str(shipped.dir / m.file))
        assert container.format_id(modelfile.content_id(tensors)) == m.id
