"""The command line as a user meets it: outputs, and one clear line for every bad input."""

import json
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
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


def test_decoding_an_image_says_it_is_not_a_nic_file(env, png):
    """`nicodec decode photo.png` (a slip for encode) names the wrong input, not the output."""
    before = png.read_bytes()
    result = run("decode", png)
    assert_one_line_error(result, "not a .nic file")
    assert str(png.name) in result.output and "exists" not in result.output
    assert png.read_bytes() == before
    assert_one_line_error(run("info", png), f"{png.name}: not a .nic file")


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


# --------------------------------------------------------------------------- conventions
def test_stdin_to_stdout_both_ways(env, png):
    r = CliRunner().invoke(main, ["encode", "-", "-o", "-"], input=png.read_bytes())
    assert r.exit_code == 0, r.output
    assert r.stdout_bytes[:4] == b"NIC\x1a" and "bpp" in r.stderr
    assert run("encode", png, "-o", env / "file.nic").exit_code == 0
    assert r.stdout_bytes == (env / "file.nic").read_bytes()
    d = CliRunner().invoke(main, ["decode", "-", "-o", "-"], input=r.stdout_bytes)
    assert d.exit_code == 0, d.output
    assert d.stdout_bytes[:8] == b"\x89PNG\r\n\x1a\n"
    assert run("decode", env / "file.nic", "-o", env / "file.png").exit_code == 0
    assert d.stdout_bytes == (env / "file.png").read_bytes()


def test_stdio_misuse_is_refused(env, png):
    assert_one_line_error(CliRunner().invoke(main, ["encode", "-"], input=b""), "needs -o")
    assert_one_line_error(run("encode", png, png, "-o", "-"), "single input")
    assert_one_line_error(run("encode", "-", png, "-o", env / "d"), "only input")


@pytest.mark.parametrize("suffix", [".tif", ".tiff", ".webp", ".bmp"])
def test_decoded_format_follows_the_extension_losslessly(env, nic, suffix):
    src = _write(env, "x.nic", nic)
    assert run("decode", src, "-o", env / "ref.png").exit_code == 0
    assert run("decode", src, "-o", env / f"out{suffix}").exit_code == 0
    im = Image.open(env / f"out{suffix}")
    assert im.format == {".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP", ".bmp": "BMP"}[suffix]
    assert np.array_equal(np.asarray(im.convert("RGB")), np.asarray(Image.open(env / "ref.png")))


@pytest.mark.parametrize("name, needle", [("out.jpg", "lossy format"),
                                          ("out.xyz", "not a format")])
def test_lossy_or_unknown_output_format_is_refused_up_front(env, nic, name, needle):
    src = _write(env, "x.nic", nic)
    assert_one_line_error(run("decode", src, "-o", env / name), needle)
    assert not (env / name).exists()


def test_quiet_prints_nothing_and_verbose_names_the_models(env, png):
    r = run("encode", png, "-o", env / "q.nic", "--quiet")
    assert r.exit_code == 0 and r.output == ""
    r = run("decode", env / "q.nic", "-o", env / "q.png", "--quiet")
    assert r.exit_code == 0 and r.output == ""
    r = run("encode", png, "-o", env / "v.nic", "-v")
    assert r.exit_code == 0 and "base model" in r.stderr


def test_domain_error_comes_before_the_output_error(env, png):
    assert run("encode", png).exit_code == 0  # img.nic now exists beside img.png
    assert_one_line_error(run("encode", png, "--domain", "martian"), "unknown domain")
    assert_one_line_error(run("encode", env / "nope.png", "-o", env / "nodir" / "x.nic"),
                          "no such file")


def test_pixel_limit_refuses_big_images_and_headers_quickly(env, png, nic):
    assert_one_line_error(run("encode", png, "--max-pixels", 1000), "pixel limit")
    # a tiny file declaring 16384 x 16384: refused before any memory is spent
    big = _write(env, "big.nic", _recrc(nic[:10] + struct.pack("<HH", 16384, 16384) + nic[14:]))
    assert_one_line_error(run("decode", big, "-o", env / "big.png"), "pixel limit")
    # allowed by the limit, its payload is far too short for that many latents
    assert_one_line_error(run("decode", big, "-o", env / "big.png", "--max-pixels", 300_000_000),
                          "cannot hold the latents")
    assert not (env / "big.png").exists()


def test_allocation_failure_is_one_error_line(env, nic, monkeypatch):
    from nicodec import codec

    def no_memory(*a, **k):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: "
                           "can't allocate memory")
    monkeypatch.setattr(codec.Codec, "decode", no_memory)
    assert_one_line_error(run("decode", _write(env, "m.nic", nic), "-o", env / "m.png"),
                          "not enough memory")


def _commands(group, prefix=()):
    for name, cmd in group.commands.items():
        yield prefix + (name,), cmd
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, prefix + (name,))


def test_every_command_has_an_example_and_exit_codes_are_documented(env):
    assert "Exit status" in run("--help").output
    for path, _ in _commands(main):
        text = run(*path, "--help").output
        assert "Example" in text, path


def test_an_animation_codes_its_first_frame_and_says_so(env):
    first, second = smooth_image(24, 40, seed=4), smooth_image(24, 40, seed=5)
    src = env / "anim.png"  # an APNG: two frames
    Image.fromarray(first).save(src, save_all=True, append_images=[Image.fromarray(second)])
    r = run("encode", src, "-o", env / "anim.nic", "-q", 3)
    assert r.exit_code == 0, r.output
    assert "(first of 2 frames coded)" in r.stderr
    still = env / "still.png"
    Image.fromarray(first).save(still)
    r = run("encode", still, "-o", env / "still.nic", "-q", 3)
    assert r.exit_code == 0 and "frames" not in r.stderr, r.output
    assert (env / "anim.nic").read_bytes() == (env / "still.nic").read_bytes()
