import subprocess
import sys

import pytest

from compgs import io
from compgs.cli.main import main
from compgs.splats import Splats


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
        raise SystemExit(0)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_info_table(tmp_path, capsys):
    path = tmp_path / "s.ply"
    io.save(Splats.random(1234, sh_degree=2), path)
    code, out, _ = run_cli(["info", str(path)], capsys)
    assert code == 0
    for expected in ("ply", "1,234", "SH degree", "bytes / Gaussian", "bounds min", "opacity"):
        assert expected in out


def test_convert(tmp_path, capsys):
    src = tmp_path / "s.ply"
    io.save(Splats.random(100, sh_degree=1), src)
    code, out, _ = run_cli(["convert", str(src), str(tmp_path / "s.spz")], capsys)
    assert code == 0 and "100 Gaussians" in out
    assert io.load(tmp_path / "s.spz").num_gaussians == 100


@pytest.mark.parametrize(
    "content,message",
    [
        (b"", "empty"),
        (
            b"ply\nformat binary_little_endian 1.0\nelement vertex 5\nend_header\n",
            "missing required",
        ),
        (b"\x1f\x8b" + b"garbage" * 10, "gzip stream is corrupt"),
    ],
)
def test_bad_files_one_line_nonzero(tmp_path, capsys, content, message):
    path = tmp_path / "bad.ply"
    path.write_bytes(content)
    code, _, err = run_cli(["info", str(path)], capsys)
    assert code == 1
    assert err.count("\n") == 1 and message in err and err.startswith("compgs: error:")


@pytest.mark.parametrize(
    "args,code", [(["nope"], 2), (["info"], 2), (["info", "--bogus", "x"], 2), ([], 2)]
)
def test_bad_flags(capsys, args, code):
    got, _, err = run_cli(args, capsys)
    assert got == code
    if args:
        assert err.count("\n") == 1


def test_console_script_no_traceback(tmp_path):
    bad = tmp_path / "bad.splat"
    bad.write_bytes(b"\0" * 33)
    result = subprocess.run(
        [sys.executable, "-m", "compgs", "convert", str(bad), str(tmp_path / "o.ply")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "not a multiple of 32" in result.stderr
    assert not (tmp_path / "o.ply").exists()


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--device", "foo"], "--device 'foo': expected auto, cpu, cuda or cuda:N"),
        (["--viewer", "--viewer-port", "abc"], "expected a port number"),
        (["--viewer", "--viewer-port", "99999"], "a TCP port is 0..65535"),
        (["--codebook-from", "/nonexistent"], "needs a CompGS method"),
        (["--method", "compgs-4k", "--codebook-from", "/nonexistent"], "no such run folder"),
        (["--method", "nope"], "unknown method"),
    ],
)
def test_train_rejects_bad_flags_before_loading(tmp_path, capsys, flags, message):
    """Checked before the scene is read: the folder here is not even a scene."""
    code, _, err = run_cli(["train", "--data", str(tmp_path), *flags], capsys)
    assert code == 1 and err.count("\n") == 1 and message in err, err


def test_train_on_a_device_this_machine_lacks(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, _, err = run_cli(["train", "--data", str(tmp_path), "--device", "cuda"], capsys)
    assert code == 1 and "CUDA is not available" in err


def test_command_output_on_stderr_is_not_swallowed(capsys):
    """Only tyro's parsing is captured; what a command itself says reaches the user."""
    from compgs.cli.main import parse

    def loud(x: int = 1) -> int:
        print("from the command", file=sys.stderr)
        return x + 1

    assert parse(loud, ["--x", "4"], "loud") == 5
    assert "from the command" in capsys.readouterr().err


def test_view_rejects_a_port_out_of_range(tmp_path, capsys):
    path = tmp_path / "s.splat"
    io.save(Splats.random(5), path)
    code, _, err = run_cli(["view", str(path), "--no-browser", "--port", "99999"], capsys)
    assert code == 1 and "a TCP port is 0..65535" in err
