"""One table across experiment folders: model, fusion stage, DER and its parts per collar.

Reads {exp}/eval/report.json (written by evaluate) and {exp}/config.json when present.
"""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path
from typing import Dict, List, Sequence

from core.models import MODEL_IDS, fusion_stage
from eval.plots import plot_comparison

METRICS = ("der", "false_alarm", "missed", "confusion", "jer")


def _model_id(summary: Dict, config: Dict):
    model_id = summary.get("model", {}).get("model_id")
    if model_id is None:
        value = config.get("model")
        model_id = MODEL_IDS.get(value, value)
    try:
        return int(model_id)
    except (TypeError, ValueError):
        return None


def _stage(model_id) -> str:
    """Where the video enters model `model_id`; "?" when the id is unknown."""
    try:
        return fusion_stage(model_id)
    except ValueError:
        return "?"


def _cell(value: float) -> str:
    return "-" if value != value else f"{value:.2f}"


def collect(exp_dirs: Sequence[str]) -> List[Dict]:
    """One row per (experiment, mode, collar); experiments without a report are warned."""
    rows = []
    for exp in exp_dirs:
        exp = Path(exp)
        report = exp / "eval" / "report.json"
        if not report.is_file():
            report = exp / "report.json" if (exp / "report.json").is_file() else report
        if not report.is_file():
            warnings.warn(f"{exp}: no eval/report.json (run `run.py eval` first); skipped",
                          stacklevel=2)
            continue
        summary = json.loads(report.read_text())
        config_path = exp / "config.json"
        config = json.loads(config_path.read_text()) if config_path.is_file() else {}
        model_id = _model_id(summary, config)
        if "local" in summary:  # chunk-level DER: no collar, no JER
            rows.append({"experiment": exp.name, "model": model_id,
                         "fusion": _stage(model_id), "mode": "local",
                         "collar": 0.0, **{m: float(summary["local"].get(m, "nan"))
                                           for m in METRICS}})
        for mode, by_collar in summary.get("totals", {}).items():
            for collar, values in by_collar.items():
                rows.append({"experiment": exp.name, "model": model_id,
                             "fusion": _stage(model_id), "mode": mode,
                             "collar": float(collar.split("=")[-1]),
                             **{m: float(values[m]) for m in METRICS}})
    return rows


def compare(exp_dirs: Sequence[str], out_dir: str) -> str:
    """Write comparison.md, comparison.csv and comparison.png into out_dir; return the
    Markdown table's path."""
    rows = collect(exp_dirs)
    if not rows:
        raise ValueError("no experiment folder holds an evaluation report")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    columns = ["experiment", "model", "fusion", "mode", "collar", *METRICS]
    with open(out / "comparison.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| experiment | model | fusion stage | clustering | collar (s) | DER % "
             "| false alarm % | missed % | confusion % | JER % |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['experiment']} | {r['model']} | {r['fusion']} | {r['mode']} | "
                     f"{r['collar']:g} | " + " | ".join(_cell(r[m]) for m in METRICS) + " |")
    path = out / "comparison.md"
    path.write_text("\n".join(lines) + "\n")
    experiments = list(dict.fromkeys(r["experiment"] for r in rows))
    series = {}
    for r in rows:
        key = f"{r['mode']}, collar {r['collar']:g}"
        series.setdefault(key, {})[r["experiment"]] = r["der"]
    values = {k: [v.get(e, float("nan")) for e in experiments] for k, v in series.items()}
    plot_comparison(experiments, values, str(out / "comparison.png"),
                    title="DER by experiment")
    return str(path)
