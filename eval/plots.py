"""PNG figures: reference-vs-hypothesis timelines and the comparison bar chart."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence

from pyannote.core import Annotation, Segment


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_timeline(reference: Optional[Annotation], hypothesis: Annotation, path: str, *,
                  title: str = "", extent: Optional[Segment] = None) -> str:
    """Reference turns above hypothesis turns, one colour per label, saved as PNG."""
    plt = _pyplot()
    rows = [("reference", reference)] if reference is not None else []
    rows.append(("hypothesis", hypothesis))
    labels: List[str] = []
    for _, annotation in rows:
        labels += [label for label in annotation.labels() if label not in labels]
    colours = plt.get_cmap("tab20")
    colour = {label: colours(i % 20) for i, label in enumerate(labels)}
    lanes = {}
    for name, annotation in rows:
        for label in annotation.labels():
            lanes[(name, label)] = len(lanes)
    figure, axis = plt.subplots(figsize=(12, 0.35 * max(len(lanes), 2) + 1.2))
    for (name, label), lane in lanes.items():
        annotation = dict(rows)[name]
        spans = [(s.start, s.duration) for s in annotation.label_timeline(label)]
        axis.broken_barh(spans, (len(lanes) - lane - 0.8, 0.6), color=colour[label])
    axis.set_yticks([len(lanes) - lane - 0.5 for lane in lanes.values()])
    axis.set_yticklabels([f"{name[:3]} {label}" for name, label in lanes], fontsize=7)
    if extent is not None:
        axis.set_xlim(extent.start, extent.end)
    axis.set_xlabel("time (s)")
    axis.set_title(title or "reference (top) vs hypothesis (bottom)")
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return str(path)


def plot_comparison(names: Sequence[str], values: Dict[str, Sequence[float]], path: str, *,
                    ylabel: str = "DER (%)", title: str = "") -> str:
    """Grouped bars: one group per experiment, one bar per series (e.g. per collar)."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(max(6, 1.2 * len(names) + 2), 4))
    width = 0.8 / max(len(values), 1)
    for index, (series, heights) in enumerate(values.items()):
        positions = [i + (index - (len(values) - 1) / 2) * width for i in range(len(names))]
        bars = axis.bar(positions, [h if h == h else 0.0 for h in heights], width,
                        label=series)
        axis.bar_label(bars, labels=[f"{h:.1f}" if h == h else "n/a" for h in heights],
                       fontsize=7)
    axis.set_xticks(range(len(names)))
    axis.set_xticklabels(names, rotation=20, ha="right", fontsize=8)
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.legend(fontsize=8)
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return str(path)
