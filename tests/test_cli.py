"""The command line as a user meets it: outputs, and one clear line for every bad input."""

import json
import os
import struct
import subprocess
import sys
import zlib

import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import smooth_image
from nicodec.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(result, needle):
    assert result.exit_code == 1, result.output
    text = result.stderr.strip()
    assert text.startswith("error:") and "\n" not in text, text
    assert needle in text, text
    assert "Traceback" not in result.output


@pytest.fixture()
def png(env):
    p = env / "img.png"
    Image.fromarray(smooth_image(45, 70)).save(p)
    return p


def test_encode_decode_info_round_trip(env, png):
    r = run("encode", png, "-q", 3)
    assert r.exit_code == 0, r.output
    nic = env / "img.nic"
    assert nic.exists() and "bpp" in r.stderr and not r.stdout
    r = run("decode", nic, "-o", env / "out.png")
    assert r.exit_code == 0, r.output
    assert Image.open(env / "out.png").size == (70, 45)
    r = run("info", nic, "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["width"] == 70 and d["quality"] == 3 and d["adapter_id"] is None
    assert d["base_model"]["installed"] and d["file_bytes"] == nic.stat().st_size
    assert "installed" in run("info", nic).stdout


def test_several_inputs_go_to_a_directory(env, png):
    other = env / "b.png"
    Image.fromarray(smooth_image(20, 20, seed=3)).save(other)
    r = run("encode", png, other, "-o", env / "nics", "-q", 1)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (env / "nics").iterdir()) == ["b.nic", "img.nic"]
    r = run("decode", *sorted((env / "nics").iterdir()), "-o", env / "pngs")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (env / "pngs").iterdir()) == ["b.png", "img.png"]


@pytest.fixture()
def nic(env, png):
    assert run("encode", png, "-o", env / "good.nic").exit_code == 0
    return (env / "good.nic").read_bytes()


def _write(env, name, data):
    p = env / name
    p.write_bytes(data)
    return p


def _recrc(d):
    head = d[:28]
    return head + struct.pack("<I", zlib.crc32(d[32:], zlib.crc32(head))) + d[32:]


@pytest.mark.parametrize("name, mutate, needle", [
    ("trunc.nic", lambda d: d[: len(d) // 2], "truncated"),
    ("flip.nic", lambda d: d[:40] + bytes([d[40] ^ 0x10]) + d[41:], "CRC32"),
    ("magic.nic", lambda d: b"JUNK" + d[4:], "wrong magic"),
    ("newer.nic", lambda d: _recrc(d[:4] + b"\x09" + d[5:]), "format version 9"),
    ("unknown.nic", lambda d: _recrc(d[:16] + b"\x01\x02\x03\x04" + d[20:]), "04030201"),
    ("adapter.nic", lambda d: _recrc(d[:20] + b"\x05\x06\x07\x08" + d[24:]), "08070605"),
    ("huge.nic", lambda d: _recrc(d[:10] + struct.pack("<HH", 65535, 65535) + d[14:]),
     "outside the supported range"),
    ("empty.nic", lambda d: b"", "wrong magic"),
])
def test_bad_nic_files_fail_cleanly_without_output(env, nic, name, mutate, needle):
    bad = _write(env, name, mutate(nic))
    result = run("decode", bad)
    assert_one_line_error(result, needle)
    assert not bad.with_suffix(".png").exists()
    assert not [p for p in env.iterdir() if p.name.endswith(".part")]


def test_bad_images_fail_cleanly_without_output(env):
    assert_one_line_error(run("encode", env / "missing.png"), "no such file")
    txt = _write(env, "notes.png", b"this is not an image")
    assert_one_line_error(run("encode", txt), "not an image")
    assert not (env / "notes.nic").exists()
    cut = env / "cut.png"
    Image.fromarray(smooth_image(64, 64)).save(cut)
    cut.write_bytes(cut.read_bytes()[:200])
    assert_one_line_error(run("encode", cut), "cut.png")
    assert not (env / "cut.nic").exists()
    assert_one_line_error(run("info", env / "missing.nic"), "no such file")


def test_unwritable_output_and_unknown_domain(env, png):
    assert_one_line_error(run("encode", png, "-o", env / "nodir" / "x.nic"), "does not exist")
    assert_one_line_error(run("encode", png, "--domain", "martian"), "martian")
    assert not (env / "img.nic").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_read_only_directory(env, png):  # pragma: no cover - CI runs as root
    ro = env / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    assert_one_line_error(run("encode", png, "-o", ro / "x.nic"), "cannot write")


def test_real_process_prints_no_traceback(env):
    bad = _write(env, "bad.nic", b"NIC\x1a" + b"\x00" * 10)
    p = subprocess.run([sys.executable, "-m", "nicodec.cli", "decode", str(bad)],
                       capture_output=True, text=True, env=os.environ.copy())
    assert p.returncode == 1
    assert p.stderr.strip() == "error: truncated .nic file (incomplete header)"
    assert not bad.with_suffix(".png").exists()


def test_default_output_never_replaces_a_file(env, png):
    assert run("encode", png).exit_code == 0
    nic = env / "img.nic"
    before = png.read_bytes()
    r = run("decode", nic)  # img.png (the original) is beside it
    assert_one_line_error(r, "name the output with -o")
    assert png.read_bytes() == before
    assert run("decode", nic, "-o", png).exit_code == 0  # explicit: replaced


@pytest.mark.skipif(not os.path.isdir("/sys/kernel"), reason="needs sysfs")
def test_unwritable_output_even_for_root(env, png):
    assert_one_line_error(run("encode", png, "-o", "/sys/kernel/x.nic"), "cannot write")
