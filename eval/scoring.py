"""DER and JER through pyannote.metrics, per file and in total, at one collar.

`collar` is pyannote's: the total width in seconds of the no-score zone centred on each
reference boundary (0.25 means +-0.125 s; md-eval's `-c 0.25` is +-0.25 s, i.e. 0.5 here).
Durations are seconds; rates are percentages of the scored reference speech.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional

from pyannote.core import Annotation, Timeline
from pyannote.metrics.diarization import DiarizationErrorRate, JaccardErrorRate

COLUMNS = ("total_s", "false_alarm_s", "missed_s", "confusion_s", "der", "false_alarm",
           "missed", "confusion", "jer")


@dataclass
class Scores:
    """One row: durations in seconds, rates in percent."""

    total_s: float = 0.0
    false_alarm_s: float = 0.0
    missed_s: float = 0.0
    confusion_s: float = 0.0
    jer: float = float("nan")

    def _rate(self, value: float) -> float:
        return 100.0 * value / self.total_s if self.total_s > 0 else float("nan")

    @property
    def der(self) -> float:
        return self._rate(self.false_alarm_s + self.missed_s + self.confusion_s)

    @property
    def false_alarm(self) -> float:
        return self._rate(self.false_alarm_s)

    @property
    def missed(self) -> float:
        return self._rate(self.missed_s)

    @property
    def confusion(self) -> float:
        return self._rate(self.confusion_s)

    def as_dict(self) -> Dict[str, float]:
        return {name: float(getattr(self, name)) for name in COLUMNS}


@dataclass
class ScoreTable:
    """Per-file scores and their total at one collar / overlap setting."""

    collar: float
    skip_overlap: bool
    files: Dict[str, Scores] = field(default_factory=dict)
    total: Scores = field(default_factory=Scores)
    missing_hypotheses: List[str] = field(default_factory=list)
    missing_references: List[str] = field(default_factory=list)


def check_coverage(references: Mapping[str, Annotation],
                   hypotheses: Mapping[str, Annotation]) -> tuple:
    """(uris without hypothesis, uris without reference), each warned about by name."""
    no_hypothesis = sorted(set(references) - set(hypotheses))
    no_reference = sorted(set(hypotheses) - set(references))
    if no_hypothesis:
        warnings.warn(f"no hypothesis for {len(no_hypothesis)} reference file(s), scored as "
                      f"all missed: {', '.join(no_hypothesis)}", stacklevel=3)
    if no_reference:
        warnings.warn(f"no reference for {len(no_reference)} hypothesis file(s), not scored: "
                      f"{', '.join(no_reference)}", stacklevel=3)
    return no_hypothesis, no_reference


def score(references: Mapping[str, Annotation], hypotheses: Mapping[str, Annotation],
          uems: Optional[Mapping[str, Timeline]] = None, *, collar: float = 0.0,
          skip_overlap: bool = False) -> ScoreTable:
    """DER (false alarm, missed detection, confusion) and JER of every referenced file.

    A file is scored over its UEM when `uems` has it, else over the extent of reference
    and hypothesis together (pyannote's default).
    """
    if collar < 0:
        raise ValueError(f"--collar must be >= 0 seconds, got {collar}")
    no_hypothesis, no_reference = check_coverage(references, hypotheses)
    der_metric = DiarizationErrorRate(collar=collar, skip_overlap=skip_overlap)
    jer_metric = JaccardErrorRate(collar=collar, skip_overlap=skip_overlap)
    table = ScoreTable(collar=collar, skip_overlap=skip_overlap,
                       missing_hypotheses=no_hypothesis, missing_references=no_reference)
    for uri in sorted(references):
        reference = references[uri]
        hypothesis = hypotheses.get(uri, Annotation(uri=uri))
        uem = (uems or {}).get(uri)
        if uem is None:
            uem = (reference.get_timeline().extent() | hypothesis.get_timeline().extent())
            uem = Timeline([uem], uri=uri) if uem else None
        detail = der_metric(reference, hypothesis, uem=uem, detailed=True)
        jer = jer_metric(reference, hypothesis, uem=uem) if len(reference.labels()) else 0.0
        table.files[uri] = Scores(
            total_s=detail["total"], false_alarm_s=detail["false alarm"],
            missed_s=detail["missed detection"], confusion_s=detail["confusion"],
            jer=100.0 * jer)
    totals = Scores(jer=100.0 * abs(jer_metric) if table.files else float("nan"))
    for row in table.files.values():
        totals.total_s += row.total_s
        totals.false_alarm_s += row.false_alarm_s
        totals.missed_s += row.missed_s
        totals.confusion_s += row.confusion_s
    table.total = totals
    return table
