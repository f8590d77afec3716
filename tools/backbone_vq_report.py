"""The report of tools/backbone_vq.py: tables (markdown), JSON and plot.

write_outputs(args, list(SWEEP), float_acc, budget, results, agreement, [out, docs])
"""

from __future__ import annotations

import itertools
import json

import numpy as np


def _stat(values: list[float]) -> str:
    """Percent, with mean ± sample standard deviation and n when there are several."""
    if len(values) == 1:
        return f"{100 * values[0]:.1f}"
    return f"{100 * np.mean(values):.1f} ± {100 * np.std(values, ddof=1):.1f} (n={len(values)})"


def _span(values: list[float], fmt: str) -> str:
    """One value, or min-max over the seeds."""
    low, high = min(values), max(values)
    return fmt.format(low) if low == high else f"{fmt.format(low)} - {fmt.format(high)}"


def by_config(results: list[dict], order: list[str]) -> dict[str, list[dict]]:
    """Rows grouped by configuration, in ``order`` (the sweep's), seeds in order."""
    groups: dict[str, list[dict]] = {}
    for r in sorted(results, key=lambda r: (order.index(r["config"]), r.get("seed", 0))):
        groups.setdefault(r["config"], []).append(r)
    return groups


def write_outputs(args, order, float_acc, budget, results, agree, out_dirs):
    """Tables (markdown), JSON and plot of the experiment, into every one of ``out_dirs``."""
    groups = by_config(results, order)
    f32 = results[0]["float32_bytes"] if results else 0
    budget_accs = [b["acc"] for b in budget]
    lines = [
        f"Float EfficientNet-Lite0 (MNIST fine-tuned {args.epochs} epochs, {args.size} px): top-1 "
        f"{100 * float_acc:.2f} %, {f32:,} B in float32. Same-budget float ({args.epochs} + "
        f"{args.qat_epochs} epochs, the extra ones with the QAT recipe): top-1 {_stat(budget_accs)} %.",
        "",
        "| config | K | d | index bits/w | file bits/w (quantized layers) | file size | ratio "
        f"| PTQ | PTQ+BN | QAT | QAT - float ({args.epochs} ep) "
        f"| QAT - float ({args.epochs + args.qat_epochs} ep) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, rows in groups.items():
        r = rows[0]
        qat = [x["acc_qat"] for x in rows]
        bn = [x["acc_ptq_bn"] for x in rows if x["acc_ptq_bn"] is not None]
        lines.append(
            f"| {name} | {r['k']} | {r['dim']} | {r['bits']} | "
            f"{r['quantized_bits_per_weight']:.2f} | {_span([x['bytes'] for x in rows], '{:,} B')} | "
            f"{_span([x['ratio'] for x in rows], '{:.2f}x')} | "
            f"{_stat([x['acc_ptq'] for x in rows])} | {_stat(bn) if bn else '-'} | {_stat(qat)} | "
            f"{100 * (np.mean(qat) - float_acc):+.1f} | "
            + (f"{100 * (np.mean(qat) - np.mean(budget_accs)):+.1f} |" if budget_accs else "- |")
        )
    paired = [(n, rows) for n, rows in groups.items() if len(rows) > 1 and rows[0]["acc_ptq_bn"]]
    if paired:
        lines += ["", "QAT - PTQ+BN, paired by seed (same k-means start), in points:", ""]
    for name, rows in paired:
        gaps = [r["acc_qat"] - r["acc_ptq_bn"] for r in rows]
        lines.append(
            f"* {name}: "
            + ", ".join(f"{100 * g:+.1f}" for g in gaps)
            + f" (mean {100 * np.mean(gaps):+.1f} ± {100 * np.std(gaps, ddof=1):.1f})"
        )
    kinds = sorted({k for rows in groups.values() for k in rows[0].get("leftovers", {})})
    lines += [
        "",
        "Where the bytes go (seed 0 QAT files; float leftovers by kind are raw f16 bytes before "
        "the section's zstd):",
        "",
        "| config | indices | codebooks | channel scales | float leftovers (stored) | metadata "
        "| file | " + " | ".join(kinds) + " |",
        "| --- " * (7 + len(kinds)) + "|",
    ]
    for name, rows in groups.items():
        c, left = rows[0]["categories"], rows[0].get("leftovers", {})
        cells = [c["indices"], c["codebooks"], c.get("channel scales", 0), c["float leftovers"],
                 c["metadata"], rows[0]["bytes"]] + [left.get(k, 0) for k in kinds]  # fmt: skip
        lines.append(f"| {name} | " + " | ".join(f"{v:,}" for v in cells) + " |")
    if agree:
        lines += [
            "",
            f"ImageNet top-1 agreement with the float backbone on {agree['rows'][0]['crops']} crops of "
            f"{agree['rows'][0]['images']} held-out Mary Rose photos ({args.agree_size} px; the float "
            f"model predicts {agree['distinct_float_classes']} distinct classes, most often "
            + ", ".join(f"{n} ({c})" for n, c in agree["float_top_classes"])
            + "):"
            + (f" {agree['note']}" if agree.get("note") else ""),
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
    payload = {"float_accuracy": float_acc, "same_budget_float": budget, "settings": {k: str(v) for k, v in vars(args).items()},
               "results": results, "agreement": agree}  # fmt: skip
    for d in out_dirs:
        d.mkdir(parents=True, exist_ok=True)
        (d / "backbone_vq_results.md").write_text(table)
        (d / "backbone_vq_results.json").write_text(json.dumps(payload, indent=1) + "\n")
        plot(groups, float_acc, budget_accs, d / "backbone_vq.png")
    print(table)


def _means(members: list[list[dict]], key: str) -> list[float]:
    """Mean accuracy (%) over the seeds of every configuration (NaN when not measured)."""
    return [
        100 * np.mean([r[key] for r in rows if r[key] is not None] or [np.nan]) for rows in members
    ]


def plot(groups, float_acc, budget_accs, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    families: dict[str, list] = {}  # "scalar", "vector+fold", ...: its configs by bits
    for name, rows in groups.items():
        family = name.split("-")[0] + name.split("-")[1].partition("b")[2]
        families.setdefault(family, []).append(rows)
    markers = itertools.cycle("osD^vP*Xh")
    for family, members in families.items():
        members.sort(key=lambda rows: rows[0]["bits"])
        marker = next(markers)
        xs = [rows[0]["bits"] for rows in members]

        # Variants (+cs, +fold): QAT only, to keep the plot readable.
        curves = [("acc_qat", "-", "QAT")] if "+" in family else [
            ("acc_ptq", ":", "PTQ"), ("acc_ptq_bn", "--", "PTQ+BN"), ("acc_qat", "-", "QAT"),
        ]  # fmt: skip
        for key, style, label in curves:
            a.plot(xs, _means(members, key), style, marker=marker, label=f"{family} {label}")
        b.plot([rows[0]["bytes"] / 1e3 for rows in members], _means(members, "acc_qat"), "-",
               marker=marker, label=f"{family} QAT")  # fmt: skip
    for ax in (a, b):
        ax.axhline(100 * float_acc, color="k", lw=0.8, label="float32 (3 ep)")
        if budget_accs:
            ax.axhline(100 * np.mean(budget_accs), color="k", lw=0.8, ls="--",
                       label="float32 (same budget)")  # fmt: skip
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
