"""evaluate(): model over a protocol split or files -> diarization -> RTTM, DER reports, plots.

Writes into out_dir: {split}.rttm (the full pipeline's output, or the oracle's when the
full pipeline was skipped), {split}.{mode}.rttm per mode, report.csv, report.md,
report.json, and timelines/{uri}.png for the first `num_plots` files.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
from pyannote.core import Annotation, Segment, Timeline
from tqdm.auto import tqdm

from core.local_der import der_from_sums
from core.models import takes_video, video_size
from data.audio import read_audio_file
from eval.embeddings import window_embeddings
from eval.files import find_video, protocol_files, references_of
from eval.inference import infer_file, inference_precision
from eval.local import local_error_sums
from eval.pipeline import ClusteringOptions, diarize
from eval.plots import plot_timeline
from eval.reconstruct import rename_to_reference
from eval.reports import totals_dict, write_csv, write_json, write_markdown, write_rttm
from eval.scoring import ScoreTable, score


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def evaluate(model: nn.Module, protocol_or_files: Union[object, Sequence[Dict]], *,
             split: str = "test", out_dir: str, video_dir: Optional[str] = None,
             video_fps: Optional[float] = None,
             step_ratio: float = 0.1, batch_size: int = 32,
             collars: Sequence[float] = (0.0, 0.25), skip_overlap: bool = False,
             clustering: Sequence[str] = ("oracle", "full"),
             embedding_model: Optional[nn.Module] = None,
             embedding_error: Optional[str] = None,
             options: Optional[ClusteringOptions] = None,
             device: Optional[torch.device] = None, num_plots: int = 3,
             progress: bool = True, title: Optional[str] = None,
             amp: str = "auto") -> Dict:
    """Diarize every file and score it. Returns {"totals": {mode: {"collar=C": {der, ...}}},
    "skipped": {mode: reason}, "files": [uris], "outputs": {name: path}}.

    protocol_or_files: a pyannote.database protocol (its `split` is used) or a list of file
    dicts (see eval/files.py). clustering: any of "full" (needs `embedding_model`) and
    "oracle" (needs references). Without an embedding model the full pipeline is skipped
    with `embedding_error` as the reason, and the oracle is still reported. amp: the
    segmentation's precision (eval.inference.inference_precision); embeddings stay float32.
    """
    files = (list(protocol_or_files) if isinstance(protocol_or_files, (list, tuple))
             else protocol_files(protocol_or_files, split))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = device or default_device()
    model = model.to(device).eval()
    precision = inference_precision(device, amp)
    if video_fps is not None and getattr(model, "video_fps", None) not in (None, video_fps):
        warnings.warn(f"--video-fps {video_fps} differs from the model's {model.video_fps}; "
                      "the model's is used", stacklevel=2)
    fusion = takes_video(model)
    if fusion and not video_dir:
        warnings.warn(f"{type(model).__name__} is a fusion model and no video folder was "
                      "given: every file is processed on audio alone (a video ablation; "
                      "pass --video-dir to use the video)", stacklevel=2)
    references = references_of(files)
    modes, skipped = _modes(clustering, references, embedding_model, embedding_error)
    if embedding_model is not None and "full" in modes:
        embedding_model = embedding_model.to(device).eval()
    hypotheses: Dict[str, Dict[str, Annotation]] = {mode: {} for mode in modes}
    uems: Dict[str, Timeline] = {}
    extents: Dict[str, Segment] = {}
    runnable = [f for f in files if f.get("audio")]
    local = {"false_alarm": 0.0, "missed": 0.0, "confusion": 0.0, "speech": 0.0}
    overall = tqdm(runnable, desc=f"eval {split}", unit="file", disable=not progress)
    for file in overall:
        uri = file["uri"]
        waveform = read_audio_file(file["audio"])
        video = find_video(video_dir, uri, video_size(model)) if fusion else None
        windows = infer_file(model, waveform, video, step_ratio=step_ratio,
                             batch_size=batch_size, device=device, progress=progress, desc=uri,
                             amp=amp)
        extents[uri] = Segment(0.0, windows.duration_s)
        uems[uri] = file.get("annotated") or Timeline([extents[uri]], uri=uri)
        reference = file.get("annotation")
        if reference is not None:
            for key, value in local_error_sums(windows, reference, uems[uri]).items():
                local[key] += value
        if "oracle" in modes and reference is not None:
            hypotheses["oracle"][uri] = diarize(windows, uri=uri, reference=reference,
                                                options=options)
        if "full" in modes:
            vectors = window_embeddings(embedding_model, waveform, windows,
                                        batch_size=batch_size, device=device,
                                        progress=progress, desc=f"{uri} embeddings")
            hypothesis = diarize(windows, uri=uri, embeddings=vectors, options=options)
            if reference is not None:
                hypothesis = rename_to_reference(hypothesis, reference)
            hypotheses["full"][uri] = hypothesis
    local_rates = ({k: 100 * v for k, v in der_from_sums(local).items()}
                   if local["speech"] > 0 else None)
    outputs = _write_outputs(out, split, modes, hypotheses, references, uems, extents, collars,
                             skip_overlap, skipped, num_plots, model, step_ratio, title,
                             local_rates, video_dir, precision)
    tables = outputs.pop("_tables")
    summary = {"totals": totals_dict(tables), "skipped": skipped,
               "files": [f["uri"] for f in files], "outputs": outputs, "split": split,
               "model": _model_info(model), "step_ratio": step_ratio,
               "video_dir": str(video_dir) if fusion and video_dir else None,
               "skip_overlap": skip_overlap, "precision": precision}
    if local_rates is not None:
        summary["local"] = local_rates
    write_json(summary, str(out / "report.json"))
    summary["outputs"]["json"] = str(out / "report.json")
    return summary


def _modes(clustering: Sequence[str], references: Dict, embedding_model,
           embedding_error: Optional[str]):
    unknown = set(clustering) - {"full", "oracle"}
    if unknown:
        raise ValueError(f"--clustering must be full, oracle or both, got {sorted(unknown)}")
    modes: List[str] = []
    skipped: Dict[str, str] = {}
    for mode in ("full", "oracle"):
        if mode not in clustering:
            continue
        if mode == "full" and embedding_model is None:
            skipped["full"] = embedding_error or "no embedding model given"
        elif mode == "oracle" and not references:
            skipped["oracle"] = "no reference annotations"
        else:
            modes.append(mode)
    if not modes:
        raise ValueError("nothing to evaluate: " + "; ".join(f"{m} skipped: {r}"
                                                             for m, r in skipped.items()))
    return modes, skipped


def _model_info(model: nn.Module) -> Dict[str, object]:
    return {"class": type(model).__name__, "model_id": getattr(model, "model_id", None),
            "is_fusion": takes_video(model),
            "duration_s": float(getattr(model, "duration_s", 0.0)),
            "powerset": getattr(model, "powerset", None) is not None}


def _write_outputs(out: Path, split, modes, hypotheses, references, uems, extents, collars,
                   skip_overlap, skipped, num_plots, model, step_ratio, title,
                   local_rates=None, video_dir=None, precision="float32") -> Dict:
    outputs: Dict[str, object] = {}
    for mode in modes:
        outputs[f"rttm_{mode}"] = write_rttm(hypotheses[mode].values(),
                                             str(out / f"{split}.{mode}.rttm"))
    main = "full" if "full" in modes else modes[0]
    outputs["rttm"] = write_rttm(hypotheses[main].values(), str(out / f"{split}.rttm"))
    tables: Dict[str, List[ScoreTable]] = {}
    if references:
        for mode in modes:
            tables[mode] = [score(references, hypotheses[mode], uems, collar=c,
                                  skip_overlap=skip_overlap) for c in collars]
        notes = [f"{mode} skipped: {reason}" for mode, reason in skipped.items()]
        if "full" in skipped:
            notes[0] = f"full pipeline skipped: {skipped['full']}"
        if local_rates is not None:
            notes.insert(0, "local (chunk-level) DER, every window scored alone with its best "
                         f"speaker permutation, no collar: {local_rates['der']:.2f}% (false "
                         f"alarm {local_rates['false_alarm']:.2f}, missed "
                         f"{local_rates['missed']:.2f}, confusion "
                         f"{local_rates['confusion']:.2f})")
        settings = {"split": split, "model": _model_info(model)["class"]
                    + (f" (id {model.model_id})" if hasattr(model, "model_id") else ""),
                    "window step": f"{step_ratio:g} of the window",
                    "segmentation precision": precision, "files": len(extents)}
        if takes_video(model):
            settings["video"] = str(video_dir) if video_dir else "none (audio alone: an ablation)"
        outputs["csv"] = write_csv(tables, str(out / "report.csv"))
        outputs["markdown"] = write_markdown(tables, str(out / "report.md"),
                                             title=title or f"Diarization report: {split}",
                                             settings=settings, notes=notes)
    plots = []
    for uri in list(hypotheses[main])[:num_plots]:
        plots.append(plot_timeline(references.get(uri), hypotheses[main][uri],
                                   str(out / "timelines" / f"{uri}.png"),
                                   title=f"{uri}: reference (top) vs {main} (bottom)",
                                   extent=extents.get(uri)))
    outputs["plots"] = plots
    outputs["_tables"] = tables
    return outputs
