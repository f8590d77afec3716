"""Small models for the NOLA tests (no optional packages needed)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Conv1D(nn.Module):
    """The layout of transformers' Conv1D (GPT-2): y = x W + b with W [in, out]."""

    def __init__(self, nf: int, nx: int):
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.randn(nx, nf) * 0.2)
        self.bias = nn.Parameter(torch.randn(nf) * 0.1)

    def forward(self, x):
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).reshape(
            *x.shape[:-1], self.nf
        )


class SamePadConv(nn.Conv2d):
    """A Conv2d subclass with its own forward (like EfficientNet's static "same" padding)."""

    def forward(self, x):
        return F.conv2d(
            F.pad(x, (1, 1, 1, 1)),
            self.weight,
            self.bias,
            self.stride,
            0,
            self.dilation,
            self.groups,
        )


class Tiny(nn.Module):
    """Every layer kind an adapter wraps, plus one it does not (norm)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.same = SamePadConv(6, 8, 3, groups=2)
        self.norm = nn.LayerNorm(8)
        self.proj = Conv1D(12, 8)
        self.fc = nn.Linear(12, 5)

    def forward(self, x):
        h = torch.relu(self.same(torch.relu(self.conv(x))))
        h = self.norm(h.mean((2, 3)))
        return self.fc(torch.tanh(self.proj(h)))


def tiny(seed: int = 0) -> Tiny:
    torch.manual_seed(seed)
    return Tiny()


def randomize(params, seed: int = 1, scale: float = 0.5) -> None:
    """Give trained-looking values to coefficients (alpha starts at zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in params:
            p.copy_(torch.randn(p.shape, generator=g) * scale)
