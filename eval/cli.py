"""run.py eval: evaluate a checkpoint (ours or pyannote's) on a protocol split or RTTMs.

    run.py eval --checkpoint EXP/checkpoints/best.pt --protocol P --database db.yml
    run.py eval --checkpoint pyannote/segmentation-3.0 --groundtruths ref.rttm --uem ref.uem \
        --audio wavs/ --out out/

Without --out the reports go to the checkpoint's experiment folder: EXP/eval/. A report
already there is moved to OUT/before-<time>/ first (train-then-evaluate replaces its own).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from core.constants import INFERENCE_AMP_MODES
from core.models import add_esize_argument
from core.wespeaker import WESPEAKER_HUB_ID
from eval.clustering import MIN_CLUSTER_SIZE, THRESHOLD

SPLITS = ("test", "development")


def user_errors() -> Tuple[type, ...]:
    """The exceptions that mean bad input (a file, a checkpoint, a flag), which eval and infer
    report as one line and exit code 2 instead of a traceback."""
    from pickle import UnpicklingError

    from core.pretrained import CheckpointMismatchError
    from core.safe_pickle import CorruptCheckpointError

    return (ValueError, OSError, ConnectionError, ImportError, UnpicklingError,
            CorruptCheckpointError, CheckpointMismatchError)


def output_folder(out: str) -> Path:
    """`out` as a folder to write into (created); ValueError when it names a file."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder")
    path.mkdir(parents=True, exist_ok=True)
    return path


def error_line(error: BaseException) -> str:
    """`error`'s message on one line (a multi-line message joined with '; ')."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return "; ".join(lines) or type(error).__name__


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Inference and diarization flags shared by eval and infer."""
    g = parser.add_argument_group("inference")
    g.add_argument("--step", type=float, default=0.1,
                   help="window step as a fraction of the model's window (default 0.1)")
    g.add_argument("--batch-size", type=int, default=32, help="windows per forward pass")
    g.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    g.add_argument("--amp", default="auto", choices=INFERENCE_AMP_MODES,
                   help="segmentation precision: auto = bf16 autocast on CUDA, float32 on the "
                        "CPU; off = float32; bf16 also pays on a CPU with AMX or AVX512-BF16 "
                        "(bench/README.md)")
    g.add_argument("--no-progress", dest="progress", action="store_false")
    g = parser.add_argument_group("diarization")
    g.add_argument("--embedding", default=WESPEAKER_HUB_ID,
                   help="speaker-embedding model: a WeSpeaker checkpoint (file, folder or Hub "
                        "id), 'campplus' (CAM++ from the weights cache: run.py weights), or "
                        "'none'")
    g.add_argument("--threshold", type=float, default=THRESHOLD,
                   help="clustering threshold on L2-normalised embeddings")
    g.add_argument("--min-cluster-size", type=int, default=MIN_CLUSTER_SIZE)
    g.add_argument("--num-speakers", type=int, default=None)
    g.add_argument("--min-speakers", type=int, default=None)
    g.add_argument("--max-speakers", type=int, default=None)
    g.add_argument("--min-duration-off", type=float, default=0.0,
                   help="fill same-speaker gaps shorter than this (seconds)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("model")
    g.add_argument("--checkpoint", required=True,
                   help="our checkpoint (.pt), or a pyannote one (file, folder or Hub id)")
    g.add_argument("--model", default=None,
                   help="model to build around a pyannote checkpoint (default: its own)")
    add_esize_argument(g, help="video embedding size of a fusion model built around a "
                               "pyannote checkpoint (ours record their own)")
    g.add_argument("--revision", default=None)
    g.add_argument("--hf-token", dest="hf_token", default=None)
    g = parser.add_argument_group("data")
    g.add_argument("--protocol", default=None, help="pyannote.database protocol")
    g.add_argument("--database", action="append", default=None, help="database.yml (repeatable)")
    g.add_argument("--groundtruths", default="test",
                   help="test, development, or FILE.rttm (then --audio, or the protocol's test "
                        "audio)")
    g.add_argument("--uem", default=None, help="UEM file for --groundtruths FILE.rttm")
    g.add_argument("--audio", default=None, help="audio folder for --groundtruths FILE.rttm")
    g.add_argument("--video-dir", default=None, help="folder of {uri}.npy video embeddings")
    g.add_argument("--video-fps", type=float, default=None)
    g = parser.add_argument_group("scoring")
    g.add_argument("--collar", type=float, action="append", default=None,
                   help="collar in seconds (pyannote: total width); repeatable; "
                        "default 0 and 0.25")
    g.add_argument("--skip-overlap", action="store_true")
    g.add_argument("--clustering", default="both", choices=["full", "oracle", "both"])
    g.add_argument("--plots", type=int, default=3, help="timelines for the first N files")
    g.add_argument("--out", default=None, help="output folder (default: EXP/eval)")
    g.add_argument("--tune-threshold", default=None, metavar="T1,T2,...|grid",
                   help="instead of evaluating: the full pipeline's DER on the split for each "
                        "clustering threshold (one inference pass for all), the best one in "
                        "OUT/threshold.json; use it on development, then pass --threshold "
                        "BEST to the test evaluation")
    add_common_arguments(parser)


def resolve_device(name: str):
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device available")
    return torch.device("cuda" if name == "auto" and torch.cuda.is_available() else
                        ("cpu" if name == "auto" else name))


def load_embedding(name: Optional[str], token: Optional[str] = None, device="cpu"
                   ) -> Tuple[Optional[object], Optional[str]]:
    """(embedding model, None) or (None, reason it could not be loaded)."""
    if not name or str(name).lower() == "none":
        return None, "--embedding none"
    from core.wespeaker import load_wespeaker

    try:
        if str(name).lower() == "campplus":
            from core.campplus import load_campplus

            return load_campplus(map_location=str(device)), None
        return load_wespeaker(name, token=token, map_location=str(device)), None
    except Exception as error:  # any failure: report it and go on without the full pipeline
        return None, f"cannot load speaker-embedding model {name!r}: {error}"


def clustering_options(args: argparse.Namespace):
    from eval.pipeline import ClusteringOptions

    return ClusteringOptions(threshold=args.threshold, min_cluster_size=args.min_cluster_size,
                             num_speakers=args.num_speakers, min_speakers=args.min_speakers,
                             max_speakers=args.max_speakers,
                             min_duration_off=args.min_duration_off)


def _databases(value) -> List[str]:
    if not value:
        return []
    return [value] if isinstance(value, str) else list(value)


def select_files(args: argparse.Namespace) -> Tuple[str, List[Dict]]:
    """(split name, files) from --groundtruths, --protocol/--database, --audio, --uem."""
    from eval.files import protocol_files, rttm_files

    groundtruths = args.groundtruths or "test"
    if groundtruths in SPLITS or groundtruths == "dev":
        if not args.protocol:
            raise ValueError(f"--groundtruths {groundtruths} needs --protocol (and --database)")
        from data.protocol import check_references, load_protocol
        from data.references import unknown_uris_message

        split = "development" if groundtruths == "dev" else groundtruths
        protocol = load_protocol(args.protocol, _databases(args.database))
        for path, uris in check_references(args.protocol, _databases(args.database),
                                           split).items():
            warnings.warn(unknown_uris_message(path, uris, f"the {split} list of "
                                               f"{args.protocol}"), stacklevel=2)
        return split, protocol_files(protocol, groundtruths)
    if not Path(groundtruths).is_file():
        raise ValueError(f"--groundtruths {groundtruths}: neither test/development nor a file")
    split = Path(groundtruths).stem
    if args.audio:
        return split, rttm_files(groundtruths, args.audio, args.uem)
    if not args.protocol:
        raise ValueError("--groundtruths FILE.rttm needs --audio DIR or --protocol")
    from data.protocol import load_protocol
    from data.references import read_rttm, read_uem

    files = protocol_files(load_protocol(args.protocol, _databases(args.database)), "test")
    references, uems = read_rttm(groundtruths), (read_uem(args.uem) if args.uem else {})
    missing = sorted(set(references) - {f["uri"] for f in files})
    if missing:
        warnings.warn(f"{groundtruths}: no test audio for {', '.join(missing)}", stacklevel=2)
    for file in files:
        file["annotation"] = references.get(file["uri"])
        file["annotated"] = uems.get(file["uri"], file.get("annotated"))
    return split, files


def run_evaluation(model, args: argparse.Namespace, out_dir: str) -> Dict:
    """Shared by `run.py eval` and train-then-evaluate."""
    from eval.evaluate import EvalOptions, evaluate

    device = resolve_device(getattr(args, "device", "auto") or "auto")
    split, files = select_files(args)
    clustering = {"both": ("oracle", "full"), "full": ("full",),
                  "oracle": ("oracle",)}[getattr(args, "clustering", "both")]
    embedding, reason = (None, "--clustering oracle")
    if "full" in clustering:
        embedding, reason = load_embedding(getattr(args, "embedding", WESPEAKER_HUB_ID),
                                           getattr(args, "hf_token", None), device)
        if reason:
            print(f"run.py eval: full pipeline skipped: {reason}", file=sys.stderr)
    collars = getattr(args, "collar", None)
    collars = [collars] if isinstance(collars, (int, float)) else (collars or [])
    collars = sorted(set([0.0, 0.25] + [float(c) for c in collars]))
    options = EvalOptions(
        out_dir=out_dir, split=split, video_dir=getattr(args, "video_dir", None),
        video_fps=getattr(args, "video_fps", None), step_ratio=getattr(args, "step", 0.1),
        batch_size=getattr(args, "batch_size", 32), collars=collars,
        skip_overlap=bool(getattr(args, "skip_overlap", False)), clustering=clustering,
        clustering_options=clustering_options(_with_defaults(args)), device=device,
        num_plots=getattr(args, "plots", 3), progress=getattr(args, "progress", True),
        amp=getattr(args, "amp", "auto"))
    return evaluate(model, files, options, embedding_model=embedding, embedding_error=reason)


def run_tuning(model, args: argparse.Namespace, out_dir: str) -> Dict:
    """`--tune-threshold`: eval.tuning.tune_threshold on the selected split; prints the sweep."""
    from eval.evaluate import EvalOptions
    from eval.tuning import format_tuning, parse_thresholds, tune_threshold

    thresholds = parse_thresholds(args.tune_threshold)
    device = resolve_device(args.device)
    split, files = select_files(args)
    embedding, reason = load_embedding(args.embedding, args.hf_token, device)
    if reason:
        raise ValueError(f"--tune-threshold needs a speaker-embedding model: {reason}")
    collars = sorted(set(args.collar or [0.0]))
    options = EvalOptions(out_dir=out_dir, split=split, video_dir=args.video_dir,
                          step_ratio=args.step, batch_size=args.batch_size, collars=collars,
                          skip_overlap=args.skip_overlap, clustering=("full",),
                          clustering_options=clustering_options(args), device=device,
                          progress=args.progress, amp=args.amp)
    result = tune_threshold(model, files, embedding, thresholds, options)
    print(format_tuning(result))
    print(f"best threshold {result['best']:g} (written to {Path(out_dir) / 'threshold.json'})")
    return result


def _with_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the diarization flags that the training parser does not define."""
    parser = argparse.ArgumentParser(add_help=False)
    add_common_arguments(parser)
    merged = vars(parser.parse_args([]))
    merged.update({k: v for k, v in vars(args).items() if k in merged})
    return argparse.Namespace(**merged)


def print_totals(summary: Dict) -> None:
    if "local" in summary:
        row = summary["local"]
        print(f"local   chunks       DER {row['der']:6.2f}%  FA {row['false_alarm']:6.2f}%"
              f"  miss {row['missed']:6.2f}%  conf {row['confusion']:6.2f}%")
    for mode, by_collar in summary["totals"].items():
        for collar, row in by_collar.items():
            print(f"{mode:7s} {collar:12s} DER {row['der']:6.2f}%  FA {row['false_alarm']:6.2f}%"
                  f"  miss {row['missed']:6.2f}%  conf {row['confusion']:6.2f}%"
                  f"  JER {row['jer']:6.2f}%")
    for mode, reason in summary["skipped"].items():
        print(f"{mode} skipped: {reason}")
    if "markdown" in summary["outputs"]:
        print(f"report: {summary['outputs']['markdown']}")


def _experiment_out(checkpoint: str) -> Optional[Path]:
    path = Path(checkpoint)
    if path.is_file() and path.parent.name == "checkpoints":
        return path.parent.parent / "eval"
    return None


def main(args: argparse.Namespace) -> int:
    """run.py eval. An earlier report in the output folder is moved to before-<time>/
    (eval.reports.set_aside_report), never replaced."""
    from core import load_pretrained
    from eval.reports import set_aside_report

    out = args.out or _experiment_out(args.checkpoint)
    if out is None:
        print("run.py eval: --out is needed when --checkpoint is not in an experiment folder",
              file=sys.stderr)
        return 2
    try:
        out = output_folder(str(out))
        device = resolve_device(args.device)
        model = load_pretrained(args.checkpoint, model=args.model, esize=args.esize,
                                revision=args.revision, token=args.hf_token,
                                map_location=str(device))
        if args.tune_threshold is not None:
            run_tuning(model, args, str(out))
            return 0
        aside = set_aside_report(str(out))
        if aside is not None:
            print(f"run.py eval: the earlier report in {out} is kept in {aside}",
                  file=sys.stderr)
        summary = run_evaluation(model, args, str(out))
    except user_errors() as error:
        print(f"run.py eval: {error_line(error)}", file=sys.stderr)
        return 2
    print_totals(summary)
    return 0


def evaluate_after_training(args: argparse.Namespace) -> int:
    """Evaluate {cdir}/{project}/{name}/checkpoints/best.pt (else last.pt) into .../eval/."""
    from core import load_pretrained

    experiment = Path(getattr(args, "experiment_dir", None)
                      or Path(args.cdir) / args.project / args.name)
    checkpoint = getattr(args, "trained_checkpoint", None)
    if not checkpoint:
        best, last = experiment / "checkpoints" / "best.pt", experiment / "checkpoints" / "last.pt"
        checkpoint = best if best.is_file() else last
    if not Path(checkpoint).is_file():
        print(f"run.py: no checkpoint to evaluate in {experiment / 'checkpoints'}",
              file=sys.stderr)
        return 2
    try:
        model = load_pretrained(str(checkpoint))
        summary = run_evaluation(model, args, str(experiment / "eval"))
    except user_errors() as error:
        print(f"run.py: evaluation failed: {error_line(error)}", file=sys.stderr)
        return 2
    print_totals(summary)
    return 0
