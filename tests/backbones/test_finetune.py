import pytest
import torch
from torch import nn

from compgs.backbones import (
    FinetuneConfig,
    VQConfig,
    accuracy,
    finetune,
    predict,
    quantize_model,
    quantized_layers,
    recalibrate_batchnorm,
)
from compgs.errors import InputError

from .test_quantize import reference_weight


def mlp():
    return nn.Sequential(
        nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4)
    )


@pytest.fixture(scope="module")
def task():
    """A float network trained on labels of a random teacher network (512 points)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only cost synchronisation
    torch.manual_seed(0)
    x = torch.randn(512, 16)
    with torch.no_grad():
        y = mlp()(x).argmax(1)
    net = mlp()
    finetune(net, x, y, FinetuneConfig(epochs=60, batch_size=64, lr=3e-3))
    torch.set_num_threads(saved)
    return net, x, y


def copy_of(net):
    clone = mlp()
    clone.load_state_dict(net.state_dict())
    return clone


def cross_entropy(net, x, y):
    return float(nn.functional.cross_entropy(predict(net, x), y))


def test_qat_beats_post_training(task):
    net, x, y = task
    assert accuracy(net, x, y) > 0.9
    student = quantize_model(copy_of(net), VQConfig(bits=1, min_size=0))  # 2 levels per layer
    ptq, ptq_acc = cross_entropy(student, x, y), accuracy(student, x, y)
    config = FinetuneConfig(epochs=15, batch_size=64, lr=3e-3, assign_every=8, distill=0.5)
    losses = finetune(student, x, y, config, teacher=net)
    qat = cross_entropy(student, x, y)
    assert qat < 0.6 * ptq, (ptq, qat)
    assert accuracy(student, x, y) >= ptq_acc
    assert sum(losses[-8:]) < sum(losses[:8])
    # Still a codebook model: every effective weight is a centroid.
    modules = dict(student.named_modules())
    for name, vq in quantized_layers(student).items():
        assert torch.equal(modules[name].weight, reference_weight(vq, modules[name].weight.shape))
        assert torch.unique(modules[name].weight).numel() <= 2


def test_assignments_frozen_after_freeze_point(task):
    net, x, y = task
    student = quantize_model(copy_of(net), VQConfig(bits=2, min_size=0))
    seen = []

    def record(step, steps, loss):
        seen.append({n: vq.indices.clone() for n, vq in quantized_layers(student).items()})

    config = FinetuneConfig(epochs=4, batch_size=64, lr=1e-2, assign_every=2, freeze_at=0.5)
    finetune(student, x, y, config, progress=record)  # 32 steps, frozen from step 16
    frozen = seen[15:]
    assert any(not torch.equal(seen[0][n], seen[14][n]) for n in seen[0])  # re-assigned before
    for state in frozen[1:]:
        for name in state:
            assert torch.equal(state[name], frozen[0][name])


def test_label_free_distillation_approaches_teacher(task):
    net, x, _ = task
    student = quantize_model(copy_of(net), VQConfig(bits=1, min_size=0))
    teacher_out = nn.functional.log_softmax(predict(net, x), 1)

    def gap():  # KL(teacher || student)
        out = nn.functional.log_softmax(predict(student, x), 1)
        return float(nn.functional.kl_div(out, teacher_out, log_target=True, reduction="batchmean"))

    before = gap()
    config = FinetuneConfig(epochs=10, batch_size=64, lr=3e-3, distill=1.0, assign_every=8)
    finetune(student, x, None, config, teacher=net)
    assert gap() < 0.6 * before, before


def test_recalibrate_batchnorm_matches_data_statistics():
    torch.manual_seed(1)
    net = nn.Sequential(nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    images = 2.0 + 3.0 * torch.randn(100, 3, 4, 4)
    recalibrate_batchnorm(net, images, batch_size=25)
    bn = net[0]
    assert torch.allclose(bn.running_mean, images.mean(dim=(0, 2, 3)), atol=1e-4)
    # Cumulative average of per-batch unbiased variances.
    batches = images.split(25)
    var = torch.stack([b.var(dim=(0, 2, 3), unbiased=True) for b in batches]).mean(0)
    assert torch.allclose(bn.running_var, var, atol=1e-4)
    assert bn.momentum == 0.1 and not net.training


def test_freeze_bn_keeps_statistics(task):
    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(16, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 4))
    _, x, y = task
    before = net[1].running_mean.clone()
    finetune(net, x, y, FinetuneConfig(epochs=1, freeze_bn=True))
    assert torch.equal(net[1].running_mean, before)
    finetune(net, x, y, FinetuneConfig(epochs=1))
    assert not torch.equal(net[1].running_mean, before)


def test_eval_mode_training_is_deterministic(task):
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(16, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.9))
    net.append(nn.Linear(8, 4))
    _, x, y = task
    first = torch.randperm(512, generator=torch.Generator().manual_seed(3))[:64]
    expected = float(nn.functional.cross_entropy(predict(net, x[first]), y[first]))
    stats = net[1].running_mean.clone()
    losses = finetune(net.train(), x, y, FinetuneConfig(epochs=1, eval_mode=True, seed=3))
    # No dropout and frozen statistics: the first loss is the eval-mode loss of the first batch.
    assert losses[0] == pytest.approx(expected, rel=1e-5)
    assert torch.equal(net[1].running_mean, stats)


def test_bad_finetune_input(task):
    net, x, y = task
    with pytest.raises(InputError, match="needs a teacher"):
        finetune(net, x, None, FinetuneConfig())
    with pytest.raises(InputError, match="labels"):
        finetune(net, x, y[:10], FinetuneConfig())
    with pytest.raises(InputError, match="distill"):
        FinetuneConfig(distill=2.0)
