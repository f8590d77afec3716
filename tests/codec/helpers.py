"""Random codebooks and assignments for codec tests (no k-means needed)."""

import torch

from compgs.codec.cgs import DEFAULT_GROUPS, field_shapes, group_vectors
from compgs.splats import Splats


def random_quantized(n, sizes=None, degree=3, seed=0, groups=None):
    """Splats whose grouped fields equal codebook[index], with those codebooks and indices."""
    groups = groups or DEFAULT_GROUPS
    sizes = sizes or {name: 64 for name in groups}
    g = torch.Generator().manual_seed(seed)
    splats = Splats.random(n, sh_degree=degree, seed=seed)
    shapes = field_shapes(degree)
    codebooks, assignments = {}, {}
    for name, fields in groups.items():
        dim = group_vectors(splats, fields).shape[1]
        codebooks[name] = torch.randn(sizes[name], dim, generator=g) * 0.5
        assignments[name] = torch.randint(0, sizes[name], (n,), generator=g)
        vectors = codebooks[name][assignments[name]]
        start = 0
        for f in fields:
            width = int(torch.tensor(shapes[f]).prod()) if shapes[f] else 1
            setattr(splats, f, vectors[:, start : start + width].reshape(n, *shapes[f]).clone())
            start += width
    return splats, codebooks, assignments
