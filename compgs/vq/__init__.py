"""The codebook engine: k-means, quantization-aware codebooks, scalar quantizers.

It knows nothing about Gaussians, adapters or networks: it works on tensors of
vectors x [N, d]. Users: CompGS attribute codebooks (`compgs.train`,
`compgs.quantize`), NOLA coefficient quantization, vision-backbone weight sharing.

    from compgs.vq import kmeans, assign, update_centroids, Codebook, QATSchedule

    result = kmeans(x, 4096, iters=20)          # centroids [K, d], assignments [N]
    book = Codebook(4096, x.shape[1])
    schedule = QATSchedule(start=15_000, assign_every=100, freeze=25_000)
    xq = book.step(x, schedule.step(i))         # in the training loop
"""

from compgs.vq.codebook import Codebook, GroupLayout, join_groups
from compgs.vq.kmeans import KMeansResult, inertia, kmeans, update_centroids
from compgs.vq.nearest import assign, faiss_available
from compgs.vq.scalar import (
    LevelCodes,
    UniformCodes,
    dequantize,
    fake_quantize_levels,
    fake_quantize_uniform,
    fit_levels,
    quantize_kmeans,
    quantize_levels,
    quantize_uniform,
)
from compgs.vq.schedule import QATAction, QATSchedule

__all__ = [
    "Codebook",
    "GroupLayout",
    "KMeansResult",
    "LevelCodes",
    "QATAction",
    "QATSchedule",
    "UniformCodes",
    "assign",
    "dequantize",
    "faiss_available",
    "fake_quantize_levels",
    "fake_quantize_uniform",
    "fit_levels",
    "inertia",
    "join_groups",
    "kmeans",
    "quantize_kmeans",
    "quantize_levels",
    "quantize_uniform",
    "update_centroids",
]
