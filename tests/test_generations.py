"""Model generations: encoding uses the newest, every generation decodes, an adapter made on
an old generation keeps encoding on its own base, and adapt builds on the newest."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from conftest import smooth_image
from nicodec import container, registry
from nicodec.adapt import adapt
from nicodec.cli import main
from nicodec.network import FactorizedPrior


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def two_generations(tmp_path_factory):
    """A registry with generations 1 and 2 of qualities 1 and 3 (seeded, untrained)."""
    d = tmp_path_factory.mktemp("models")
    for gen in (1, 2):
        for quality in (1, 3):
            torch.manual_seed(10 * gen + quality)
            registry.export_base(FactorizedPrior(), domain="photo", quality=quality,
                                 lam={1: 0.002, 3: 0.016}[quality], steps=0, command="test",
                                 train_images=0, models_dir=d, generation=gen)
    return d


@pytest.fixture()
def gens(two_generations, tmp_path, monkeypatch):
    monkeypatch.setenv("NICODEC_MODELS", str(two_generations))
    monkeypatch.setenv("NICODEC_HOME", str(tmp_path / "home"))
    reg = registry.Registry()
    ids = {(m.generation, m.quality): m.id for m in reg.bases()}
    return tmp_path, reg, ids


@pytest.fixture()
def png(tmp_path):
    p = tmp_path / "img.png"
    Image.fromarray(smooth_image(40, 56)).save(p)
    return p


def test_files_are_named_per_generation(gens):
    _, reg, _ = gens
    files = sorted(m.file for m in reg.bases())
    assert files == ["photo-g2-q1.safetensors", "photo-g2-q3.safetensors",
                     "photo-q1.safetensors", "photo-q3.safetensors"]
    assert reg.generations() == [1, 2]


def test_encode_uses_the_newest_generation_and_every_generation_decodes(gens, png):
    tmp, reg, ids = gens
    assert run("encode", png, "-q", 3, "-o", tmp / "new.nic").exit_code == 0
    header, _ = container.parse((tmp / "new.nic").read_bytes())
    assert container.format_id(header.base_id) == ids[(2, 3)]
    old = reg.codec(quality=3, generation=1).encode(np.asarray(Image.open(png)))
    assert container.format_id(container.parse(old)[0].base_id) == ids[(1, 3)]
    (tmp / "old.nic").write_bytes(old)
    for name in ("new", "old"):
        r = run("decode", tmp / f"{name}.nic", "-o", tmp / f"{name}.png")
        assert r.exit_code == 0, r.output
    info = json.loads(run("info", tmp / "old.nic", "--json").stdout)
    assert info["base_model"]["generation"] == 1
    assert "generation 1" in run("info", tmp / "old.nic").stdout


def test_models_folds_old_generations_unless_all(gens):
    _, _, ids = gens
    short, full = run("models").stdout, run("models", "--all").stdout
    assert ids[(2, 3)] in short and ids[(1, 3)] not in short
    assert "older generations" in short
    assert ids[(2, 3)] in full and ids[(1, 3)] in full


def test_an_adapter_on_an_old_generation_keeps_its_base_and_adapt_uses_the_newest(gens, png):
    tmp, reg, ids = gens
    folder = tmp / "target"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(smooth_image(48, 64, seed=i)).save(folder / f"t{i}.png")
    new = adapt(folder, name="fresh", k=2, qualities=(3,), steps=2, batch=2, crop=32,
                progress=False, log=lambda m: None)
    assert new["meta"].qualities[3].base_id == ids[(2, 3)]
    # an adapter made while generation 1 was the newest (as 0.1's users made theirs)
    old = adapt(folder, name="older", k=2, qualities=(3,), steps=2, batch=2, crop=32,
                progress=False, log=lambda m: None, reg=_only_generation_1(reg))
    assert old["meta"].qualities[3].base_id == ids[(1, 3)]
    assert run("encode", png, "--domain", "older", "-q", 3, "-o", tmp / "o.nic").exit_code == 0
    header, _ = container.parse((tmp / "o.nic").read_bytes())
    assert container.format_id(header.base_id) == ids[(1, 3)]
    assert run("decode", tmp / "o.nic", "-o", tmp / "o.png").exit_code == 0
    # continuing it carries its custom filters onto the newest base of that quality
    r = run("adapt", folder, "--name", "again", "--init", "older", "--qualities", 3,
            "--steps", 1, "--synthesis-steps", 0, "--batch", 2)
    assert r.exit_code == 0, r.output
    assert f"extends base {ids[(1, 3)]} (generation 1); it goes on training on " \
           f"{ids[(2, 3)]} (generation 2)" in " ".join(r.output.split())
    again = registry.Registry().find_package("again")
    assert again.qualities[3].base_id == ids[(2, 3)]
    assert again.qualities[3].training["rebased_from"] == ids[(1, 3)]
    assert again.qualities[3].training["init_id"] == old["meta"].qualities[3].id
    assert run("encode", png, "--domain", "again", "-q", 3, "-o", tmp / "a.nic").exit_code == 0
    header, _ = container.parse((tmp / "a.nic").read_bytes())
    assert container.format_id(header.base_id) == ids[(2, 3)]
    assert run("decode", tmp / "a.nic", "-o", tmp / "a.png").exit_code == 0
    # the old adapter and its files are untouched
    assert run("decode", tmp / "o.nic", "-o", tmp / "o2.png").exit_code == 0
    assert np.array_equal(np.asarray(Image.open(tmp / "o.png")),
                          np.asarray(Image.open(tmp / "o2.png")))


def test_only_an_adapter_of_its_own_parameters_moves_to_a_newer_base(gens):
    """A naive fine-tuning stores a whole codec: continuing it on a newer base would train
    the old codec under the new base's ID, so it is refused."""
    tmp, reg, ids = gens
    folder = tmp / "naive"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(smooth_image(48, 64, seed=i)).save(folder / f"t{i}.png")
    adapt(folder, name="oldnaive", method="naive", qualities=(3,), steps=1, batch=2, crop=32,
          progress=False, log=lambda m: None, reg=_only_generation_1(reg))
    r = run("adapt", folder, "--name", "again", "--init", "oldnaive", "--qualities", 3,
            "--steps", 1)
    assert r.exit_code == 1
    assert f"extends base model {ids[(1, 3)]}, not {ids[(2, 3)]}" in r.output, r.output


def _only_generation_1(reg: registry.Registry) -> registry.Registry:
    old = registry.Registry(reg.dir)
    old.manifest = replace(reg.manifest,
                           bases=[m for m in reg.manifest.bases if m.generation == 1])
    return old


@pytest.fixture()
def partial(two_generations, tmp_path, monkeypatch):
    """Generations 1 and 2 of qualities 1 and 3, then a generation 3 that renews q3 alone
    (as 0.11's generation 6 renewed only q4)."""
    import shutil

    d = tmp_path / "models"
    shutil.copytree(two_generations, d)
    torch.manual_seed(33)
    registry.export_base(FactorizedPrior(), domain="photo", quality=3, lam=0.016, steps=0,
                         command="test", train_images=0, models_dir=d, generation=3)
    monkeypatch.setenv("NICODEC_MODELS", str(d))
    monkeypatch.setenv("NICODEC_HOME", str(tmp_path / "home"))
    reg = registry.Registry()
    return tmp_path, reg, {(m.generation, m.quality): m.id for m in reg.bases()}


def test_a_generation_that_renews_one_quality_keeps_the_others(partial, png):
    tmp, reg, ids = partial
    assert reg.generations() == [1, 2, 3]
    pick = lambda q, g=None: reg.find_base(quality=q, generation=g).id  # noqa: E731
    assert (pick(1), pick(3)) == (ids[(2, 1)], ids[(3, 3)])  # the newest of each quality
    assert (pick(1, 3), pick(3, 3)) == (ids[(2, 1)], ids[(3, 3)])  # generation 3's set
    assert (pick(1, 2), pick(3, 2)) == (ids[(2, 1)], ids[(2, 3)])  # pinning still works
    assert (pick(1, 1), pick(3, 1)) == (ids[(1, 1)], ids[(1, 3)])
    with pytest.raises(registry.NicodecError, match="generation 0 or older"):
        reg.find_base(quality=1, generation=0)
    for q, want in ((1, ids[(2, 1)]), (3, ids[(3, 3)])):
        assert run("encode", png, "-q", q, "-o", tmp / f"q{q}.nic").exit_code == 0
        header, _ = container.parse((tmp / f"q{q}.nic").read_bytes())
        assert container.format_id(header.base_id) == want
        assert run("decode", tmp / f"q{q}.nic", "-o", tmp / f"q{q}.png").exit_code == 0
    short = run("models").stdout  # what encoding uses, whatever generation it is from
    assert ids[(3, 3)] in short and ids[(2, 1)] in short
    assert ids[(2, 3)] not in short and ids[(1, 1)] not in short


def test_adapt_builds_on_the_newest_base_of_each_quality(partial):
    tmp, reg, ids = partial
    folder = tmp / "target"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(smooth_image(48, 64, seed=i)).save(folder / f"t{i}.png")
    made = adapt(folder, name="mixed", k=2, qualities=(1, 3), steps=2, batch=2, crop=32,
                 progress=False, log=lambda m: None)
    assert made["meta"].qualities[1].base_id == ids[(2, 1)]
    assert made["meta"].qualities[3].base_id == ids[(3, 3)]
    # listed per quality with the generation of the base that quality extends
    rows = {line.split("│")[2].strip(): line.split("│")[4].strip()
            for line in run("models").stdout.splitlines() if "│ mixed" in line}
    assert rows == {"1": "2", "3": "3"}
