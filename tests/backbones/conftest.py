import pytest
import torch
from torch import nn


class SamePadConv(nn.Conv2d):
    """A Conv2d subclass with its own forward (like TensorFlow-style 'same' padding)."""

    def forward(self, x):
        x = nn.functional.pad(x, (1, 1, 1, 1))
        return nn.functional.conv2d(x, self.weight, self.bias, self.stride, 0)


class TinyNet(nn.Module):
    def __init__(self, num_classes: int = 5):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1, bias=False)  # 108 weights
        self.bn0 = nn.BatchNorm2d(4)
        self.conv = SamePadConv(4, 16, 3)  # 576 weights
        self.bn1 = nn.BatchNorm2d(16)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)  # 144 weights
        self.pw = nn.Conv2d(16, 32, 1)  # 512 weights
        self.fc1 = nn.Linear(32, 64)  # 2048 weights
        self.head = nn.Linear(64, num_classes)  # 320 weights

    def forward(self, x):
        x = torch.relu(self.bn0(self.stem(x)))
        x = torch.relu(self.bn1(self.conv(x)))
        x = torch.relu(self.pw(self.dw(x)))
        x = x.mean(dim=(2, 3))
        return self.head(torch.relu(self.fc1(x)))


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: threads only cost synchronisation on a shared machine."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture
def tiny_net():
    torch.manual_seed(0)
    net = TinyNet()
    # Non-trivial batch-norm statistics, so that storing them is tested too.
    with torch.no_grad():
        for bn in (net.bn0, net.bn1):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
    return net.eval()
