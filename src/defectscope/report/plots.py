"""The report's figures, drawn with matplotlib's object API (no pyplot, so no global figure state)."""

from __future__ import annotations

import io
from collections import defaultdict
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

NORMAL_COLOUR = "#3b7dd8"
DEFECT_COLOUR = "#d8453b"
HEATMAP = "turbo"
CONTOUR_COLOUR = "#39ff14"
IGNORED_LOG_KEYS = {"phase", "step", "epoch", "lr", "seconds"}


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """PNG bytes of a figure, for embedding as a data: URI."""
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _area_label(name: str, curve: dict[str, Any]) -> str:
    area = curve.get("area")
    return f"{name} ({area:.3f})" if area is not None else name


def curves_figure(category: str, entry: dict[str, Any], fpr_limit: float) -> Figure:
    """ROC (image and pixel) beside the PRO curve up to the AU-PRO limit."""
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    roc_ax, pro_ax = fig.subplots(1, 2)
    roc_ax.plot([0, 1], [0, 1], color="0.75", lw=1, ls="--")
    for key, name, colour in (("image_roc", "image", "#333333"), ("pixel_roc", "pixel", "#e07b00")):
        curve = entry.get(key)
        if curve:
            roc_ax.plot(curve["fpr"], curve["tpr"], color=colour, lw=1.8, label=_area_label(f"{name} AUROC", curve))
    roc_ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false-positive rate", ylabel="true-positive rate",
               title=f"{category}: ROC")
    _legend_or_note(roc_ax, "no ROC: one class only")
    pro = entry.get("pro")
    if pro:
        pro_ax.plot(pro["fpr"], pro["pro"], color="#7b3bd8", lw=1.8, label=_area_label("AU-PRO", pro))
        pro_ax.fill_between(pro["fpr"], pro["pro"], color="#7b3bd8", alpha=0.12)
    pro_ax.set(xlim=(0, fpr_limit), ylim=(0, 1.01), xlabel="false-positive rate (normal pixels)",
               ylabel="per-region overlap", title=f"{category}: PRO up to FPR {fpr_limit:g}")
    _legend_or_note(pro_ax, "no PRO curve: no defect regions")
    return fig


def _legend_or_note(ax: Axes, note: str) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=8)
    else:
        ax.text(0.5, 0.5, note, ha="center", va="center", transform=ax.transAxes, color="0.4")


def histogram_figure(category: str, normal: np.ndarray, defective: np.ndarray, threshold: float | None) -> Figure:
    """Image scores of normal and defective test images, with the calibrated threshold."""
    fig = Figure(figsize=(9, 3.0), layout="constrained")
    ax = fig.subplots()
    both = np.concatenate([normal, defective])
    if threshold is not None:
        both = np.append(both, threshold)
    bins = np.histogram_bin_edges(both, bins=30) if both.size else 10
    ax.hist(defective, bins=bins, color=DEFECT_COLOUR, alpha=0.45, label=f"defective ({defective.size})")
    ax.hist(normal, bins=bins, color=NORMAL_COLOUR, alpha=0.45, label=f"normal ({normal.size})")
    ax.hist(normal, bins=bins, color=NORMAL_COLOUR, histtype="step", lw=1.5)  # normal stays visible where they overlap
    if threshold is not None:
        ax.axvline(threshold, color="black", ls="--", lw=1.2, label=f"threshold {threshold:.4g}")
    ax.set(xlabel="image anomaly score", ylabel="test images", title=f"{category}: score histogram")
    ax.legend(fontsize=8)
    return fig


def loss_figure(records: list[dict[str, Any]]) -> Figure | None:
    """One panel per training phase: every logged loss and loss part against the step."""
    phases: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        phases[str(record.get("phase", "main"))].append(record)
    if not phases:
        return None
    fig = Figure(figsize=(9, 3.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(phases)))
    for ax, (phase, rows) in zip(axes, phases.items(), strict=True):
        keys = list(dict.fromkeys(k for r in rows for k in r if "/" in k and k not in IGNORED_LOG_KEYS))
        positive = True
        for key in keys:
            steps = [r["step"] for r in rows if isinstance(r.get(key), int | float)]
            values = [r[key] for r in rows if isinstance(r.get(key), int | float)]
            if values:
                positive &= min(values) > 0
                ax.plot(steps, values, lw=1.4 if key.endswith("/loss") else 1.0,
                        ls="-" if key.endswith("/loss") else ":", label=key)
        if positive and keys:
            ax.set_yscale("log")
        ax.set(xlabel="step", title=f"training loss: phase {phase}")
        if keys:
            ax.legend(fontsize=7, ncol=2)
    return fig


def gallery_figure(
    items: list[tuple[dict[str, Any], dict[str, np.ndarray]]], low: float, high: float, title: str
) -> Figure:
    """One column per image: input, heatmap (low..high) over it with the ground-truth contour, then extra maps."""
    extra_names = list(dict.fromkeys(k for _, arrays in items for k in arrays if k.startswith("extra_")))
    row_names = ["input", "anomaly map", *(name[len("extra_"):] for name in extra_names)]
    fig = Figure(figsize=(2.3 * max(len(items), 3), 2.2 * len(row_names) + 0.5), layout="constrained")
    fig.suptitle(title, fontsize=11)
    axes = fig.subplots(len(row_names), len(items), squeeze=False)
    for column, (meta, arrays) in zip(axes.T, items, strict=True):
        image, amap, mask = arrays["image"], arrays["map"].astype(np.float32), arrays["mask"]
        kind = meta.get("defect_type") or ("defective" if meta.get("label") else "normal")
        column[0].imshow(image)
        column[0].set_title(f"{meta.get('class', '')} · {kind}\nscore {meta.get('score', float('nan')):.4g}",
                            fontsize=8)
        column[1].imshow(image.mean(axis=2), cmap="gray")
        column[1].imshow(amap, cmap=HEATMAP, alpha=0.55, vmin=low, vmax=high)
        if mask.any():
            column[1].contour(mask.astype(float), levels=[0.5], colors=CONTOUR_COLOUR, linewidths=1.0)
        for ax, name in zip(column[2:], extra_names, strict=True):
            if name in arrays:
                ax.imshow(arrays[name].astype(np.float32), cmap="viridis")
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    for ax, name in zip(axes[:, 0], row_names, strict=True):
        ax.set_ylabel(name, fontsize=8)
    return fig
