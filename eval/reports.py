"""Report files: RTTM, report.csv (every file and total), report.md, report.json.

set_aside_report(out_dir) moves an earlier evaluation's outputs out of the way (into
out_dir/before-<time>/) so that a new one never replaces them silently.

Rows are keyed by mode ("full" = embeddings + clustering, "oracle" = local speakers matched
to the reference: segmentation alone) and collar (pyannote's total collar, seconds).
"""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Set

from pyannote.core import Annotation

from eval.scoring import COLUMNS, ScoreTable

MODE_TITLES = {"full": "full pipeline (embeddings + clustering)",
               "oracle": "oracle clustering (segmentation only)"}


REPORT_FILES = ("report.json", "report.md", "report.csv")


def _earlier_outputs(out: Path) -> Set[str]:
    """Names in `out` that an earlier evaluation wrote: the report files, and what its
    report.json lists (RTTMs; the timelines/ folder)."""
    names = {name for name in REPORT_FILES if (out / name).exists()}
    try:
        outputs = json.loads((out / "report.json").read_text()).get("outputs", {})
    except (OSError, ValueError, AttributeError):
        outputs = {}
    for value in outputs.values():
        for path in value if isinstance(value, list) else [value]:
            path = Path(str(path))
            names.add("timelines" if path.parent.name == "timelines" else path.name)
    if (out / "timelines").is_dir():
        names.add("timelines")
    return {name for name in names if (out / name).exists()}


def set_aside_report(out_dir: str) -> Optional[Path]:
    """Move an earlier evaluation's outputs in `out_dir` (report.{json,md,csv}, the RTTMs
    and timelines its report.json lists) into `out_dir`/before-YYYYmmdd-HHMMSS/; returns
    that folder, or None when `out_dir` holds no report."""
    out = Path(out_dir)
    if not any((out / name).is_file() for name in REPORT_FILES):
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime((out / "report.md").stat().st_mtime)
                          if (out / "report.md").is_file() else None)
    aside, n = out / f"before-{stamp}", 1
    while aside.exists():
        n += 1
        aside = out / f"before-{stamp}-{n}"
    aside.mkdir()
    for name in sorted(_earlier_outputs(out)):
        (out / name).rename(aside / name)
    return aside


def write_rttm(annotations: Iterable[Annotation], path: str) -> str:
    """All annotations into one RTTM file."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as out:
        for annotation in annotations:
            annotation.write_rttm(out)
    return str(path)


def _fmt(value: float, digits: int = 2) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:.{digits}f}"


def write_csv(tables: Dict[str, List[ScoreTable]], path: str) -> str:
    """One row per (mode, collar, skip_overlap, uri); uri TOTAL for the sums."""
    with open(path, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["mode", "collar", "skip_overlap", "uri", *COLUMNS])
        for mode, mode_tables in tables.items():
            for table in mode_tables:
                rows = list(table.files.items()) + [("TOTAL", table.total)]
                for uri, row in rows:
                    values = row.as_dict()
                    writer.writerow([mode, table.collar, int(table.skip_overlap), uri,
                                     *[f"{values[c]:.4f}" for c in COLUMNS]])
    return str(path)


def totals_dict(tables: Dict[str, List[ScoreTable]]) -> Dict[str, Dict[str, Dict[str, float]]]:
    """{mode: {"collar=0.25": {der, false_alarm, ...}}} of the totals."""
    return {mode: {f"collar={t.collar:g}": t.total.as_dict() for t in mode_tables}
            for mode, mode_tables in tables.items()}


def write_json(summary: Dict, path: str) -> str:
    with open(path, "w") as out:
        json.dump(summary, out, indent=2, sort_keys=True, default=str)
    return str(path)


def write_markdown(tables: Dict[str, List[ScoreTable]], path: str, *, title: str,
                   settings: Dict[str, object], notes: Optional[List[str]] = None) -> str:
    """Totals per mode and collar, then per-file rows at the first collar."""
    lines = [f"# {title}", ""]
    for key, value in settings.items():
        lines.append(f"- {key}: {value}")
    skip = any(t.skip_overlap for ts in tables.values() for t in ts)
    lines += [
        f"- overlapped speech: {'excluded (--skip-overlap)' if skip else 'scored'}",
        "- collar: pyannote's total width around each reference boundary (0.25 = +-0.125 s). "
        "pyannote's published AVA-AVD numbers use collar 0 with overlap scored; AVR-Net's "
        "use a 0.25 s collar.", ""]
    for note in notes or []:
        lines += [f"**{note}**", ""]
    lines += ["## Totals", "",
              "| mode | collar (s) | DER % | false alarm % | missed % | confusion % | JER % "
              "| scored speech (s) |", "|---|---|---|---|---|---|---|---|"]
    for mode, mode_tables in tables.items():
        for t in mode_tables:
            r = t.total
            lines.append(f"| {MODE_TITLES.get(mode, mode)} | {t.collar:g} | {_fmt(r.der)} | "
                         f"{_fmt(r.false_alarm)} | {_fmt(r.missed)} | {_fmt(r.confusion)} | "
                         f"{_fmt(r.jer)} | {_fmt(r.total_s, 1)} |")
    for mode, mode_tables in tables.items():
        if not mode_tables:
            continue
        t = mode_tables[0]
        lines += ["", f"## Per file: {MODE_TITLES.get(mode, mode)}, collar {t.collar:g} s", "",
                  "| uri | DER % | false alarm (s) | missed (s) | confusion (s) | JER % "
                  "| speech (s) |", "|---|---|---|---|---|---|---|"]
        for uri, r in t.files.items():
            lines.append(f"| {uri} | {_fmt(r.der)} | {_fmt(r.false_alarm_s)} | "
                         f"{_fmt(r.missed_s)} | {_fmt(r.confusion_s)} | {_fmt(r.jer)} | "
                         f"{_fmt(r.total_s, 1)} |")
        for label, uris in (("no hypothesis (all missed)", t.missing_hypotheses),
                            ("no reference (not scored)", t.missing_references)):
            if uris:
                lines += ["", f"Files with {label}: {', '.join(uris)}"]
    Path(path).write_text("\n".join(lines) + "\n")
    return str(path)
