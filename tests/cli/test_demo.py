import json

import pytest

from compgs.cli.main import main


@pytest.mark.slow
def test_demo_runs_end_to_end_on_a_tiny_budget(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--output-dir", str(tmp_path), "--max-steps", "40"])
        raise SystemExit(0)
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "3dgs-fast" in out and "compgs-32k-bitq" in out
    runs = sorted(tmp_path.glob("runs/*/*/*"))
    assert len(runs) == 2
    cgs = next(r for r in runs if "compgs" in str(r))
    metrics = json.loads((cgs / "metrics.json").read_text())
    assert (cgs / "scene.cgs").stat().st_size == metrics["size_bytes"]
    assert metrics["compression_ratio"] > 5
    assert (tmp_path / "rate_distortion.png").is_file()
