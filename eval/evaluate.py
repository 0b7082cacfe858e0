"""evaluate(): model over a protocol split or files -> diarization -> RTTM, DER reports, plots.

    summary = evaluate(model, protocol_or_files, EvalOptions(out_dir="EXP/eval"),
                       embedding_model=wespeaker)

Steps: the files to run (`_files`), the model ready on its device (`_prepare`), which
clusterings can run (`_select_modes`), every file diarized (`_diarize_file`, adding to a
`_Results`), then the outputs written (`_write_outputs`) and summarised (`_summary`).

Writes into out_dir: {split}.rttm (the full pipeline's output, or the oracle's when the
full pipeline was skipped), {split}.{mode}.rttm per mode, report.csv, report.md,
report.json, and timelines/{uri}.png for the first `num_plots` files.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from pyannote.core import Annotation, Segment, Timeline
from tqdm.auto import tqdm

from core.constants import SAMPLE_RATE
from core.local_der import DER_KEYS, der_from_sums
from core.models import takes_video, video_size
from data.audio import read_audio_file
from eval.embeddings import window_embeddings
from eval.files import find_video, min_samples, protocol_files, references_of, usable_files
from eval.inference import infer_file, inference_precision
from eval.local import local_error_sums
from eval.pipeline import ClusteringOptions, diarize
from eval.plots import plot_timeline
from eval.reconstruct import rename_to_reference
from eval.reports import totals_dict, write_csv, write_json, write_markdown, write_rttm
from eval.scoring import ScoreTable, score

MODES = ("full", "oracle")


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class EvalOptions:
    """How evaluate() runs and what it writes.

    out_dir: where the RTTMs, reports and plots go. split: the protocol split to run
    ("test", "development"; also names the outputs). video_dir: folder of {uri}.npy video
    embeddings for fusion models (None: audio alone, a video ablation). video_fps: only
    compared with the model's own (a warning when they differ). step_ratio: window step as
    a fraction of the model's window. batch_size: windows per forward pass. collars: DER
    collars in seconds. clustering: any of "full" (embeddings + clustering) and "oracle".
    clustering_options: thresholds and speaker counts (None: the defaults). device: None
    picks CUDA when there is one. num_plots: timelines for the first N files. amp: the
    segmentation's precision (eval.inference.inference_precision); embeddings stay float32.
    """

    out_dir: str
    split: str = "test"
    video_dir: Optional[str] = None
    video_fps: Optional[float] = None
    step_ratio: float = 0.1
    batch_size: int = 32
    collars: Sequence[float] = (0.0, 0.25)
    skip_overlap: bool = False
    clustering: Sequence[str] = ("oracle", "full")
    clustering_options: Optional[ClusteringOptions] = None
    device: Optional[torch.device] = None
    num_plots: int = 3
    progress: bool = True
    title: Optional[str] = None
    amp: str = "auto"


@dataclass
class _Results:
    """What diarizing the files gave: hypotheses per mode and uri, each file's UEM and
    extent, and the local DER sums (speaker-frames) over every window."""

    modes: List[str]
    skipped: Dict[str, str]
    references: Dict[str, Annotation]
    hypotheses: Dict[str, Dict[str, Annotation]] = field(default_factory=dict)
    uems: Dict[str, Timeline] = field(default_factory=dict)
    extents: Dict[str, Segment] = field(default_factory=dict)
    local_sums: Dict[str, float] = field(default_factory=lambda: dict.fromkeys(DER_KEYS, 0.0))

    def local_rates(self) -> Optional[Dict[str, float]]:
        """Local DER and its parts in percent; None without reference speech."""
        if self.local_sums["speech"] <= 0:
            return None
        return {k: 100 * v for k, v in der_from_sums(self.local_sums).items()}


def evaluate(model: nn.Module, protocol_or_files: Union[object, Sequence[Dict]],
             options: EvalOptions, *, embedding_model: Optional[nn.Module] = None,
             embedding_error: Optional[str] = None) -> Dict:
    """Diarize every file and score it. Returns {"totals": {mode: {"collar=C": {der, ...}}},
    "skipped": {mode: reason}, "files": [uris], "outputs": {name: path}, "split", "model",
    "step_ratio", "video_dir", "skip_overlap", "precision"} and "local" when there were
    references.

    protocol_or_files: a pyannote.database protocol (its `options.split` is used) or a list
    of file dicts (see eval/files.py). The "full" clustering needs `embedding_model`; without
    it the full pipeline is skipped with `embedding_error` as the reason, and the oracle
    (which needs references) is still reported. Video embeddings must be as wide as the
    model's esize (from its checkpoint); the error names the file. Audio that cannot be
    diarized (unreadable, empty, shorter than one output frame) is refused before any file
    is run when it has a reference (eval.files.usable_files), left out with a warning when not.
    """
    files = _files(protocol_or_files, options.split)
    out = Path(options.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = options.device or default_device()
    precision = inference_precision(device, options.amp)
    model = _prepare(model, device, options)
    references = references_of(files)
    modes, skipped = _select_modes(options.clustering, references, embedding_model,
                                   embedding_error)
    if embedding_model is not None and "full" in modes:
        embedding_model = embedding_model.to(device).eval()
    results = _Results(modes, skipped, references, {mode: {} for mode in modes})
    runnable = usable_files(files, min_samples(model))
    for file in tqdm(runnable, desc=f"eval {options.split}", unit="file",
                     disable=not options.progress):
        _diarize_file(model, embedding_model, file, device, options, results)
    outputs, tables = _write_outputs(out, model, results, options, precision)
    summary = _summary(files, model, results, outputs, tables, options, precision)
    write_json(summary, str(out / "report.json"))
    summary["outputs"]["json"] = str(out / "report.json")
    return summary


def _files(protocol_or_files: Union[object, Sequence[Dict]], split: str) -> List[Dict]:
    """The file dicts to evaluate: the given list, or the protocol's `split`."""
    if isinstance(protocol_or_files, (list, tuple)):
        return list(protocol_or_files)
    return protocol_files(protocol_or_files, split)


def _prepare(model: nn.Module, device: torch.device, options: EvalOptions) -> nn.Module:
    """The model on `device` in eval mode; warns when --video-fps differs from the model's
    or a fusion model gets no video folder."""
    model = model.to(device).eval()
    fps = options.video_fps
    if fps is not None and getattr(model, "video_fps", None) not in (None, fps):
        warnings.warn(f"--video-fps {fps} differs from the model's {model.video_fps}; "
                      "the model's is used", stacklevel=3)
    if takes_video(model) and not options.video_dir:
        warnings.warn(f"{type(model).__name__} is a fusion model and no video folder was "
                      "given: every file is processed on audio alone (a video ablation; "
                      "pass --video-dir to use the video)", stacklevel=3)
    return model


def _select_modes(clustering: Sequence[str], references: Dict, embedding_model,
                  embedding_error: Optional[str]) -> Tuple[List[str], Dict[str, str]]:
    """(modes that can run, {mode: why it is skipped}); ValueError when none can."""
    unknown = set(clustering) - set(MODES)
    if unknown:
        raise ValueError(f"--clustering must be full, oracle or both, got {sorted(unknown)}")
    modes: List[str] = []
    skipped: Dict[str, str] = {}
    for mode in MODES:
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


def _diarize_file(model: nn.Module, embedding_model: Optional[nn.Module], file: Dict,
                  device: torch.device, options: EvalOptions, results: _Results) -> None:
    """Sliding windows over one file, its local DER sums, and its hypothesis per mode,
    added to `results`."""
    uri = file["uri"]
    waveform = read_audio_file(file["audio"])
    video = (find_video(options.video_dir, uri, video_size(model),
                        waveform.shape[-1] / SAMPLE_RATE, _video_fps(model))
             if takes_video(model) else None)
    windows = infer_file(model, waveform, video, step_ratio=options.step_ratio,
                         batch_size=options.batch_size, device=device,
                         progress=options.progress, desc=uri, amp=options.amp)
    results.extents[uri] = Segment(0.0, windows.duration_s)
    results.uems[uri] = file.get("annotated") or Timeline([results.extents[uri]], uri=uri)
    reference = file.get("annotation")
    if reference is not None:
        for key, value in local_error_sums(windows, reference, results.uems[uri]).items():
            results.local_sums[key] += value
    if "oracle" in results.modes and reference is not None:
        results.hypotheses["oracle"][uri] = diarize(windows, uri=uri, reference=reference,
                                                    options=options.clustering_options)
    if "full" in results.modes:
        vectors = window_embeddings(embedding_model, waveform, windows,
                                    batch_size=options.batch_size, device=device,
                                    progress=options.progress, desc=f"{uri} embeddings")
        hypothesis = diarize(windows, uri=uri, embeddings=vectors,
                             options=options.clustering_options)
        if reference is not None:
            hypothesis = rename_to_reference(hypothesis, reference)
        results.hypotheses["full"][uri] = hypothesis


def _video_fps(model: nn.Module) -> float:
    """The frame rate the model's video embeddings are at (25 by default)."""
    return float(getattr(model, "video_fps", 25.0) or 25.0)


def _model_info(model: nn.Module) -> Dict[str, object]:
    return {"class": type(model).__name__, "model_id": getattr(model, "model_id", None),
            "is_fusion": takes_video(model),
            "duration_s": float(getattr(model, "duration_s", 0.0)),
            "powerset": getattr(model, "powerset", None) is not None}


def _main_mode(modes: Sequence[str]) -> str:
    """The mode whose output is {split}.rttm and the timelines: full when it ran."""
    return "full" if "full" in modes else modes[0]


def _write_outputs(out: Path, model: nn.Module, results: _Results, options: EvalOptions,
                   precision: str) -> Tuple[Dict[str, object], Dict[str, List[ScoreTable]]]:
    """RTTMs, then (with references) report.csv and report.md, then timeline plots.
    Returns ({name: path(s)}, {mode: score table per collar})."""
    split, modes, hypotheses = options.split, results.modes, results.hypotheses
    outputs: Dict[str, object] = {}
    for mode in modes:
        outputs[f"rttm_{mode}"] = write_rttm(hypotheses[mode].values(),
                                             str(out / f"{split}.{mode}.rttm"))
    main = _main_mode(modes)
    outputs["rttm"] = write_rttm(hypotheses[main].values(), str(out / f"{split}.rttm"))
    tables: Dict[str, List[ScoreTable]] = {}
    if results.references:
        for mode in modes:
            tables[mode] = [score(results.references, hypotheses[mode], results.uems,
                                  collar=c, skip_overlap=options.skip_overlap)
                            for c in options.collars]
        outputs["csv"] = write_csv(tables, str(out / "report.csv"))
        outputs["markdown"] = write_markdown(
            tables, str(out / "report.md"),
            title=options.title or f"Diarization report: {split}",
            settings=_report_settings(model, results, options, precision),
            notes=_report_notes(results))
    outputs["plots"] = [
        plot_timeline(results.references.get(uri), hypotheses[main][uri],
                      str(out / "timelines" / f"{uri}.png"),
                      title=f"{uri}: reference (top) vs {main} (bottom)",
                      extent=results.extents.get(uri))
        for uri in list(hypotheses[main])[:options.num_plots]]
    return outputs, tables


def _report_notes(results: _Results) -> List[str]:
    """report.md's notes: the local DER first, then why any mode was skipped."""
    notes = [f"{mode} skipped: {reason}" for mode, reason in results.skipped.items()]
    if "full" in results.skipped:
        notes[0] = f"full pipeline skipped: {results.skipped['full']}"
    rates = results.local_rates()
    if rates is not None:
        notes.insert(0, "local (chunk-level) DER, every window scored alone with its best "
                     f"speaker permutation, no collar: {rates['der']:.2f}% (false "
                     f"alarm {rates['false_alarm']:.2f}, missed {rates['missed']:.2f}, "
                     f"confusion {rates['confusion']:.2f})")
    return notes


def _report_settings(model: nn.Module, results: _Results, options: EvalOptions,
                     precision: str) -> Dict[str, object]:
    """report.md's settings list."""
    settings: Dict[str, object] = {
        "split": options.split,
        "model": _model_info(model)["class"]
        + (f" (id {model.model_id})" if hasattr(model, "model_id") else ""),
        "window step": f"{options.step_ratio:g} of the window",
        "segmentation precision": precision, "files": len(results.extents)}
    if takes_video(model):
        settings["video"] = (str(options.video_dir) if options.video_dir
                             else "none (audio alone: an ablation)")
    return settings


def _summary(files: List[Dict], model: nn.Module, results: _Results,
             outputs: Dict[str, object], tables: Dict[str, List[ScoreTable]],
             options: EvalOptions, precision: str) -> Dict:
    """report.json's content (see evaluate)."""
    video_dir = options.video_dir
    summary = {"totals": totals_dict(tables), "skipped": results.skipped,
               "files": [f["uri"] for f in files], "outputs": outputs, "split": options.split,
               "model": _model_info(model), "step_ratio": options.step_ratio,
               "video_dir": str(video_dir) if takes_video(model) and video_dir else None,
               "skip_overlap": options.skip_overlap, "precision": precision}
    rates = results.local_rates()
    if rates is not None:
        summary["local"] = rates
    return summary
