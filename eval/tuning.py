"""Clustering threshold tuned on one split (the development split: never on test).

    result = tune_threshold(model, files, embedding_model, THRESHOLD_GRID, EvalOptions(...))
    result["best"]  # the threshold with the lowest full-pipeline DER at collar options.collars[0]

Every file's segmentation windows and speaker embeddings are computed once; only the
clustering, reconstruction and scoring run again for each threshold.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
import torch.nn as nn
from tqdm.auto import tqdm

from core.models import takes_video, video_size
from data.audio import read_audio_file
from eval.embeddings import window_embeddings
from eval.evaluate import EvalOptions, default_device
from eval.files import find_video
from eval.inference import infer_file
from eval.pipeline import ClusteringOptions, diarize
from eval.reconstruct import rename_to_reference
from eval.scoring import score

# distances on L2-normalised embeddings (eval/clustering.py); pyannote 3.1's default is 0.7045
THRESHOLD_GRID = tuple(round(t, 2) for t in np.arange(0.40, 1.01, 0.05))


def parse_thresholds(text: str) -> List[float]:
    """"0.5,0.6,0.7" -> [0.5, 0.6, 0.7]; "grid" -> THRESHOLD_GRID; ValueError otherwise."""
    if text.strip().lower() in ("", "grid"):
        return list(THRESHOLD_GRID)
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--tune-threshold takes comma-separated numbers or 'grid', got "
                         f"{text!r}") from None
    if not values or any(not 0.0 < v <= 2.0 for v in values):
        raise ValueError(f"--tune-threshold: thresholds must lie in (0, 2], got {text!r}")
    return sorted(set(values))


def tune_threshold(model: nn.Module, files: Sequence[Dict], embedding_model: nn.Module,
                   thresholds: Sequence[float], options: EvalOptions) -> Dict:
    """Full-pipeline DER (%) of every threshold on `files` (which need references).

    Returns {"split", "collar", "thresholds": [{"threshold", "der", "false_alarm",
    "missed", "confusion", "speakers"}], "best"}: best is the threshold with the lowest DER
    at collar options.collars[0] (the smaller threshold on a tie). Writes the same as
    {options.out_dir}/threshold.json. The other clustering options come from
    options.clustering_options.
    """
    runnable = [f for f in files if f.get("audio") and f.get("annotation") is not None]
    if not runnable:
        raise ValueError(f"threshold tuning on {options.split}: no file with audio and a "
                         f"reference annotation")
    if not thresholds:
        raise ValueError("threshold tuning needs at least one threshold")
    device = options.device or default_device()
    model = model.to(device).eval()
    embedding_model = embedding_model.to(device).eval()
    base = options.clustering_options or ClusteringOptions()
    collar = float(options.collars[0]) if options.collars else 0.0
    references, uems, prepared = {}, {}, []
    for file in tqdm(runnable, desc=f"tune {options.split}", unit="file",
                     disable=not options.progress):
        uri = file["uri"]
        waveform = read_audio_file(file["audio"])
        video = (find_video(options.video_dir, uri, video_size(model))
                 if takes_video(model) and options.video_dir else None)
        windows = infer_file(model, waveform, video, step_ratio=options.step_ratio,
                             batch_size=options.batch_size, device=device, amp=options.amp)
        vectors = window_embeddings(embedding_model, waveform, windows,
                                    batch_size=options.batch_size, device=device)
        references[uri] = file["annotation"]
        if file.get("annotated") is not None:
            uems[uri] = file["annotated"]
        prepared.append((uri, windows, vectors))
    rows = []
    for threshold in sorted(thresholds):
        clustering = replace(base, threshold=float(threshold))
        hypotheses = {uri: rename_to_reference(diarize(windows, uri=uri, embeddings=vectors,
                                                       options=clustering), references[uri])
                      for uri, windows, vectors in prepared}
        total = score(references, hypotheses, uems, collar=collar,
                      skip_overlap=options.skip_overlap).total.as_dict()
        speakers = float(np.mean([len(h.labels()) for h in hypotheses.values()]))
        rows.append({"threshold": float(threshold), **{k: total[k] for k in (
            "der", "false_alarm", "missed", "confusion")}, "speakers": speakers})
    best = min(rows, key=lambda row: (row["der"], row["threshold"]))["threshold"]
    result = {"split": options.split, "collar": collar, "files": [u for u, _, _ in prepared],
              "reference_speakers": float(np.mean([len(r.labels())
                                                   for r in references.values()])),
              "thresholds": rows, "best": best}
    out = Path(options.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "threshold.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def format_tuning(result: Dict) -> str:
    """The sweep as lines: one per threshold, the best marked."""
    lines = [f"threshold sweep on {result['split']} (full pipeline, collar "
             f"{result['collar']:g}; reference speakers per file "
             f"{result['reference_speakers']:.1f}):"]
    for row in result["thresholds"]:
        mark = "  <- best" if row["threshold"] == result["best"] else ""
        lines.append(f"  threshold {row['threshold']:.3f}  DER {row['der']:6.2f}%  "
                     f"conf {row['confusion']:6.2f}%  speakers/file {row['speakers']:.1f}{mark}")
    return "\n".join(lines)
