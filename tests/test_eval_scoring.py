"""DER of hand-made hypotheses against a hand-made reference, computed by hand."""

import math

import pytest
from pyannote.core import Annotation, Segment, Timeline

from eval.scoring import score


def _annotation(uri, turns):
    annotation = Annotation(uri=uri)
    for start, end, label in turns:
        annotation[Segment(start, end)] = label
    return annotation


REFERENCE = _annotation("f", [(0.0, 10.0, "A"), (10.0, 20.0, "B")])
UEM = {"f": Timeline([Segment(0.0, 20.0)], uri="f")}


def test_perfect_hypothesis_scores_zero():
    hyp = _annotation("f", [(0.0, 10.0, "x"), (10.0, 20.0, "y")])
    table = score({"f": REFERENCE}, {"f": hyp}, UEM)
    assert table.total.der == pytest.approx(0.0)
    assert table.total.total_s == pytest.approx(20.0)


def test_components_by_hand():
    # x covers A on 0-8 (8-10 missed: 2 s); w speaks 4-6 on top of x where only A speaks
    # (2 s false alarm); y covers B on 10-15 and another label z 15-20 (5 s confusion).
    hyp = _annotation("f", [(0.0, 8.0, "x"), (4.0, 6.0, "w"), (10.0, 15.0, "y"),
                            (15.0, 20.0, "z")])
    table = score({"f": REFERENCE}, {"f": hyp}, UEM)
    row = table.files["f"]
    assert row.missed_s == pytest.approx(2.0)
    assert row.false_alarm_s == pytest.approx(2.0)
    assert row.confusion_s == pytest.approx(5.0)
    assert row.der == pytest.approx(100.0 * 9.0 / 20.0)
    assert table.total.der == pytest.approx(45.0)


def test_collar_removes_boundary_errors():
    # Hypothesis boundary 0.1 s late: 0.1 s confusion without collar, none with 0.25 s total.
    hyp = _annotation("f", [(0.0, 10.1, "x"), (10.1, 20.0, "y")])
    no_collar = score({"f": REFERENCE}, {"f": hyp}, UEM, collar=0.0)
    assert no_collar.total.confusion_s == pytest.approx(0.1)
    with_collar = score({"f": REFERENCE}, {"f": hyp}, UEM, collar=0.25)
    assert with_collar.total.der == pytest.approx(0.0)
    # the collar zones (3 boundaries x 0.25 s; the two at the UEM edges are half inside)
    assert with_collar.total.total_s < 20.0


def test_skip_overlap_and_totals_over_files():
    ref2 = _annotation("g", [(0.0, 4.0, "A"), (2.0, 6.0, "B")])
    hyp2 = _annotation("g", [(0.0, 6.0, "x")])
    refs = {"f": REFERENCE, "g": ref2}
    hyps = {"f": _annotation("f", [(0.0, 20.0, "x")]), "g": hyp2}
    uems = dict(UEM, g=Timeline([Segment(0.0, 6.0)], uri="g"))
    table = score(refs, hyps, uems)
    # f: 10 s confusion of 20; g: reference 8 s, B 2-6 -> confusion on 2-6 is 2 s (A also
    # there), missed 2 s where two speak and one is hypothesised: total errors = 4 s.
    assert table.files["f"].confusion_s == pytest.approx(10.0)
    g = table.files["g"]
    assert g.total_s == pytest.approx(8.0)
    assert g.missed_s + g.confusion_s + g.false_alarm_s == pytest.approx(4.0)
    assert table.total.der == pytest.approx(100.0 * 14.0 / 28.0)
    skipped = score(refs, hyps, uems, skip_overlap=True)
    assert skipped.files["g"].total_s == pytest.approx(4.0)
    assert not math.isnan(table.total.jer)


def test_missing_files_are_named():
    with pytest.warns(UserWarning, match="no hypothesis.*f"):
        table = score({"f": REFERENCE}, {}, UEM)
    assert table.total.missed_s == pytest.approx(20.0)
    with pytest.warns(UserWarning, match="no reference.*zzz"):
        score({"f": REFERENCE}, {"f": REFERENCE, "zzz": REFERENCE}, UEM)
