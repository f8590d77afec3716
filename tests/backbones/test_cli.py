import pytest
import torch

from compgs.backbones import load_model, read_meta, save_checkpoint
from compgs.backbones.models import register_architecture
from tests.cli.test_cli import run_cli

from .conftest import TinyNet

register_architecture("tests-tiny", TinyNet)


def test_compress_checkpoint(tmp_path, capsys):
    net = TinyNet().eval()
    save_checkpoint(net, tmp_path / "net.pth", {"name": "tests-tiny", "kwargs": {}})
    out = tmp_path / "net.cgm"
    args = ["compress-model", str(tmp_path / "net.pth"), "-o", str(out), "--bits", "2"]
    code, stdout, _ = run_cli([*args, "--min-size", "500", "--channel-scale"], capsys)
    assert code == 0
    assert f"{out.stat().st_size:,} B" in stdout
    meta = read_meta(out)
    assert [layer["name"] for layer in meta["layers"]] == ["conv", "pw", "fc1"]
    assert all(g["k"] == 4 for g in meta["groups"])
    assert [layer["scale_bytes"] for layer in meta["layers"]] == [32, 64, 128]
    loaded = load_model(out)  # the file records the architecture
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(loaded(x), net(x), atol=0.5)  # 2-bit weights: close, not equal


def test_compress_with_distillation(tmp_path, capsys):
    from PIL import Image

    torch.manual_seed(0)
    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        Image.fromarray((torch.rand(20, 24, 3) * 255).byte().numpy()).save(images / f"{i}.png")
    net = TinyNet()
    with torch.no_grad():
        net.head.weight.mul_(30)  # confident logits: a quantized student is measurably off
    torch.save(net.state_dict(), tmp_path / "w.pth")
    args = [
        "compress-model", str(tmp_path / "w.pth"), "-o", str(tmp_path / "d.cgm"),
        "--arch", "tests-tiny", "--bits", "1", "--min-size", "500", "--distill-images", str(images),
        "--image-size", "8", "--crops-per-image", "8", "--epochs", "2", "--lr", "1e-3",
    ]  # fmt: skip
    code, stdout, _ = run_cli(args, capsys)
    assert code == 0 and "distillation KL" in stdout, stdout
    before, after = (float(v) for v in stdout.split("crops: ")[1].split("\n")[0].split(" -> "))
    assert after < before, stdout


@pytest.mark.parametrize(
    "extra,message",
    [
        ([], "name the architecture with --arch"),
        (["--arch", "tests-tiny", "--include", "nothing"], "matches no Conv/Linear layer"),
        (["--arch", "tests-tiny", "--num-classes", "3"], "does not match TinyNet"),
        (["--arch", "tests-tiny", "--num-codes", "4096", "--min-size", "0"], "fewer than K=4096"),
    ],
)
def test_bad_input_one_line(tmp_path, capsys, extra, message):
    torch.save(TinyNet().state_dict(), tmp_path / "w.pth")
    args = ["compress-model", str(tmp_path / "w.pth"), "-o", str(tmp_path / "x.cgm"), *extra]
    code, _, err = run_cli(args, capsys)
    assert code == 1 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "x.cgm").exists()


def test_unknown_model_name(tmp_path, capsys):
    pytest.importorskip("torchvision")
    code, _, err = run_cli(["compress-model", "resnet_nope", "-o", str(tmp_path / "x.cgm")], capsys)
    assert code == 1 and "unknown model 'resnet_nope'" in err and err.count("\n") == 1
    code, _, err = run_cli(
        ["compress-model", "missing/ckpt.pth", "-o", str(tmp_path / "x.cgm")], capsys
    )
    assert code == 1 and "no such checkpoint" in err


def test_compress_with_folded_batchnorm(tmp_path, capsys):
    torch.manual_seed(0)
    net = TinyNet().eval()
    with torch.no_grad():
        net.bn1.running_var.uniform_(0.5, 2)
    save_checkpoint(net, tmp_path / "net.pth", {"name": "tests-tiny", "kwargs": {}})
    out = tmp_path / "net.cgm"
    args = ["compress-model", str(tmp_path / "net.pth"), "-o", str(out), "--bits", "4"]
    args += ["--min-size", "0", "--quantize-head", "--fold-batchnorm", "--image-size", "8"]
    code, stdout, _ = run_cli(args, capsys)
    assert code == 0, stdout
    assert "folded 2 batch norms" in stdout
    assert f"{out.stat().st_size:,} B" in stdout
    assert read_meta(out)["folded"] == [["stem", "bn0"], ["conv", "bn1"]]
    loaded = load_model(out)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(loaded(x), net(x), atol=0.3)  # 4-bit weights: close, not equal
