"""eval/tuning.py: the clustering threshold swept on one split, one inference pass."""

from __future__ import annotations

import json

import pytest
import torch

from core import build_model
from data.protocol import load_protocol
from data.synthetic import generate_database
from eval.evaluate import EvalOptions, evaluate
from eval.files import protocol_files
from eval.pipeline import ClusteringOptions
from eval.tuning import THRESHOLD_GRID, parse_thresholds, tune_threshold
from tests.test_eval_pipeline import TINY, TinyEmbedding


def test_thresholds_parse_and_bad_ones_are_named():
    assert parse_thresholds("0.8, 0.5,0.5") == [0.5, 0.8]
    assert parse_thresholds("grid") == list(THRESHOLD_GRID)
    with pytest.raises(ValueError, match="'0.5,x'"):
        parse_thresholds("0.5,x")
    with pytest.raises(ValueError, match="in \\(0, 2\\]"):
        parse_thresholds("0,0.5")


@pytest.mark.slow
def test_sweep_matches_evaluate_at_every_threshold(tmp_path):
    yml = generate_database(tmp_path / "db", files=2, minutes=0.3, eval_minutes=0.5, esize=16,
                            speech="synthetic")
    protocol = load_protocol("Synthetic.SpeakerDiarization.AV", [str(yml)])
    torch.manual_seed(0)
    model = build_model("audio", **TINY)
    embedding = TinyEmbedding()
    options = EvalOptions(out_dir=str(tmp_path / "tune"), split="development", batch_size=8,
                          step_ratio=0.5, progress=False, collars=[0.0], device=torch.device("cpu"))
    thresholds = [0.05, 0.5, 1.9]
    result = tune_threshold(model, protocol_files(protocol, "development"), embedding,
                            thresholds, options)
    rows = {row["threshold"]: row for row in result["thresholds"]}
    assert sorted(rows) == thresholds
    assert result["best"] == min(thresholds, key=lambda t: (rows[t]["der"], t))
    assert json.loads((tmp_path / "tune" / "threshold.json").read_text()) == result
    # a lower threshold never merges more: at least as many speakers per file
    assert rows[0.05]["speakers"] >= rows[1.9]["speakers"]
    for threshold in (0.05, 1.9):  # the same DER as a full evaluation at that threshold
        summary = evaluate(model, protocol, EvalOptions(
            out_dir=str(tmp_path / f"eval{threshold}"), split="development", batch_size=8,
            step_ratio=0.5, progress=False, collars=[0.0], clustering=("full",), num_plots=0,
            device=torch.device("cpu"),
            clustering_options=ClusteringOptions(threshold=threshold)), embedding_model=embedding)
        assert summary["totals"]["full"]["collar=0"]["der"] == pytest.approx(
            rows[threshold]["der"], abs=1e-6)


def test_sweep_without_references_says_so(tmp_path):
    with pytest.raises(ValueError, match="no file with audio and a reference"):
        tune_threshold(build_model("audio", **TINY), [{"uri": "a", "audio": "a.wav"}],
                       TinyEmbedding(), [0.5], EvalOptions(out_dir=str(tmp_path)))
