import json

import pytest

from compgs.cli.main import main


def fake_run(path, method, psnr, size):
    path.mkdir(parents=True)
    metrics = {
        "method": method, "num_gaussians": 1000, "size_bytes": size, "fps": 50.0, "train_seconds": 120,
        "eval": {"mean": {"psnr": psnr, "ssim": 0.9, "lpips": None, "psnr_am": psnr}, "num_images": 3},
    }  # fmt: skip
    (path / "metrics.json").write_text(json.dumps(metrics))
    return path


def test_compare_prints_table_and_writes_plot(tmp_path, capsys):
    a = fake_run(tmp_path / "a", "3dgs", 30.0, 50_000_000)
    b = fake_run(tmp_path / "b", "compgs-32k-bitq", 29.7, 1_000_000)
    plot = tmp_path / "rd.png"
    with pytest.raises(SystemExit) as exc:
        main(["compare", str(a), str(b), "--plot", str(plot)])
        raise SystemExit(0)
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "compgs-32k-bitq" in out and "29.70" in out and "50.00" in out and "n/a" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_rejects_unfinished_runs(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["compare", str(tmp_path)])
    assert exc.value.code == 1
    assert "no metrics.json" in capsys.readouterr().err


def test_compare_takes_an_evaluated_file_under_its_own_name(tmp_path, capsys):
    a = fake_run(tmp_path / "a", "3dgs", 30.0, 50_000_000)
    metrics = json.loads((a / "metrics.json").read_text())
    metrics.update(size_bytes=2_500_000, size_file="ptq.cgs")
    metrics["eval"]["mean"]["psnr"] = 29.8
    (a / "eval-test-ptq.json").write_text(json.dumps(metrics))
    with pytest.raises(SystemExit) as exc:
        main(["compare", str(a), str(a / "eval-test-ptq.json"), "--plot", str(tmp_path / "p.png")])
        raise SystemExit(0)
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "3dgs (ptq.cgs)" in out and "29.80" in out and "2.50" in out
