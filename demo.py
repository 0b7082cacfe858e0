"""`python run.py demo [--out demo]`: the whole study in small, on the synthetic database
with real speech, starting from the real pyannote/segmentation-3.0.

An entry-level module beside run.py (it launches `run.py train` and `run.py eval` as
subprocesses, so it sits above train/ and eval/); the comparison table it ends with is
eval/compare.py's.

1. generate the synthetic audio-visual database into {out}/db, its speech from --speech
   (LibriSpeech from ../shared/real/librispeech when it is there; printed and recorded in
   {out}/runs/demo.json); kept and reused when its settings match;
2. the starting point: `pyannote/segmentation-3.0` from the weights cache (`make weights`;
   without it the demo stops with a one-line error). `--pretrain-steps N` instead trains an
   audio-only model from scratch for N steps and starts from it: an explicit opt-in for
   machines without the weights, not the study;
3. tune the full pipeline's clustering threshold (CAM++ embeddings) on the DEVELOPMENT split
   with the zero-shot starting model (`run.py eval --tune-threshold`, one inference pass for
   every threshold; {out}/runs/threshold/threshold.json), while the training starts;
4. fine-tune the audio-only model (0) and models 6 (late), 7 (early) and 8 (hybrid) from it
   (`--finetune`: the fusion parts start as the identity, so at step 0 all four compute what
   the starting model computes), same data, seed and steps, into {out}/runs/model{id}. Two
   runs at a time with one thread each on a CPU. A run that already reached its steps is not
   trained again; an interrupted one resumes;
5. evaluate on the test split with oracle clustering and the full pipeline (segmentation +
   CAM++ + clustering at the tuned threshold), collars 0 and 0.25: the starting model as it
   is ({out}/runs/step0: the step-0 DER of every compared model), each fine-tuned model
   ({out}/runs/model{id}/eval), and each fusion model again without its video
   ({out}/runs/model{id}-novideo, oracle clustering: what the video adds to that model).
   An evaluation whose checkpoint, threshold and flags have not changed is reused;
6. compare them in {out}/comparison.{md,csv,png} and print the table, the speech, the
   threshold and the time taken (wall and CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from core.models import MODEL_NAMES, add_esize_argument
from data.cli import add_speaker_arguments
from train.config import SCHEDULERS

MODELS = {str(model_id): name for model_id, name in MODEL_NAMES.items()}  # "6" -> "late"
PRETRAIN = "pretrain"  # the from-scratch starting run of the --pretrain-steps opt-in
SEGMENTATION = "pyannote/segmentation-3.0"  # the starting model of the study
EMBEDDING = "campplus"  # the full pipeline's speaker embedding (core/campplus.py)
STEP0 = "step0"  # the starting model evaluated as it is
TUNING = "threshold"  # the clustering threshold sweep on the development split
PROTOCOL = "Synthetic.SpeakerDiarization.AV"
NO_VIDEO = "-novideo"  # suffix of a fusion model's evaluation without its video
# demo settings that change what a run learns; more --steps only continue the runs
RUN_SETTINGS = ("speech", "pretrain_steps", "batch_size", "duration", "seed", "lr", "lr_pretrained",
                "scheduler", "video_centering", "learned_locality")
# The pretrained parts fine-tune at a tenth of training's 1e-3: at 1e-3 the fusion models'
# audio paths fell behind the audio-only model's (README, "What the video adds").
LR_PRETRAINED = 1e-4
# sized for 15 minutes on 2 CPU cores (docs/2026-12-03-demo-real-speech.md)
STEPS, BATCH, VAL_EVERY, EVAL_MINUTES = 60, 8, 30, 3.0
RUN_PY = Path(__file__).resolve().parent / "run.py"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo", help="demo folder (default: demo)")
    parser.add_argument("--models", default="0,6,7,8",
                        help="comma-separated model ids to train (default: 0,6,7,8)")
    parser.add_argument("--steps", type=int, default=STEPS,
                        help=f"fine-tuning steps of each compared model (default: {STEPS})")
    parser.add_argument("--pretrain-steps", type=int, default=0,
                        help=f"opt-in for machines without {SEGMENTATION}: start from an "
                             "audio-only model trained from scratch for this many steps "
                             f"instead (default 0: start from {SEGMENTATION}, `make weights`)")
    parser.add_argument("--batch-size", type=int, default=BATCH,
                        help=f"chunks per step (default {BATCH})")
    parser.add_argument("--duration", type=float, default=10.0,
                        help="training chunk length in seconds (default 10, segmentation-3.0's)")
    parser.add_argument("--val-every", type=int, default=VAL_EVERY,
                        help=f"steps between validations (default {VAL_EVERY})")
    parser.add_argument("--thresholds", default="grid",
                        help="clustering thresholds tried on the development split, "
                             "comma-separated, or 'grid' (eval/tuning.py; default grid)")
    parser.add_argument("--workers", type=int, default=0,
                        help="data loader workers (default 0: the step, not the data, is slow)")
    parser.add_argument("--files", type=int, default=6, help="synthetic files per split")
    parser.add_argument("--minutes", type=float, default=20.0,
                        help="synthetic minutes of train audio (default 20: the pretraining "
                             "sees each second about 20 times; with 4 it saw each 100 times "
                             "and the fine-tuned models learned it by heart)")
    parser.add_argument("--eval-minutes", type=float, default=EVAL_MINUTES,
                        help="synthetic minutes of development and of test audio (default "
                             f"{EVAL_MINUTES:g})")
    add_esize_argument(parser, default=128, help="synthetic video embedding size")
    add_speaker_arguments(parser)
    parser.add_argument("--seed", type=int, default=0, help="database and training seed")
    parser.add_argument("--lr", type=float, default=None,
                        help="learning rate of every model (default: training's, 1e-3)")
    parser.add_argument("--lr-pretrained", type=float, default=LR_PRETRAINED,
                        help="learning rate of the parts every compared model takes from the "
                             "pretrained audio-only model (SincNet, LSTM, linear layers, "
                             f"classifier) while fine-tuning (default {LR_PRETRAINED:g}; the "
                             "fusion parts keep --lr); with --pretrain-steps 0 unused")
    parser.add_argument("--scheduler", default="constant", choices=list(SCHEDULERS),
                        help="learning-rate schedule of every model (default: constant)")
    parser.add_argument("--video-centering", action=argparse.BooleanOptionalAction,
                        default=None, help="passed to training (default: the models' own, on)")
    parser.add_argument("--learned-locality", action=argparse.BooleanOptionalAction,
                        default=None, help="passed to training (default: the models' own, on)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--parallel", type=int, default=None,
                        help="models trained at once (default: 2 on a CPU with 2+ cores, "
                             "1 on a GPU); each gets cores / parallel torch threads")


def database(out: Path, args: argparse.Namespace) -> Path:
    """{out}/db/database.yml, generated unless one with the same settings is there. Runs
    in {out}/runs trained on a database that is generated again are moved aside to
    {out}/runs-before-{time} (kept, not reused: they learned other data)."""
    from data.cli import speech_source
    from data.synthetic import generate_database

    args.speech = speech_source(args.speech)  # None/"auto" -> LibriSpeech folder or synthetic
    db = out / "db"
    # generate_database's arguments, compared with what it recorded in synthetic.json
    wanted = {"files": args.files, "minutes": float(args.minutes),
              "eval_minutes": float(args.eval_minutes), "esize": args.esize, "seed": args.seed,
              "pairs": args.pairs, "singles": args.singles,
              "look_alike_spread": args.look_alike_spread, "speech": args.speech}
    settings = db / "synthetic.json"
    if settings.is_file() and (db / "database.yml").is_file():
        saved = json.loads(settings.read_text())
        if all(saved.get(k) == v for k, v in wanted.items()):
            print(f"demo: reusing the synthetic database in {db}")
            return db / "database.yml"
        print(f"demo: {settings} has other settings; generating the database again")
    move_runs_aside(out, "were trained on another database")
    started = time.perf_counter()
    yml = generate_database(db, **wanted, progress=True)
    print(f"demo: synthetic database written to {db} in {time.perf_counter() - started:.0f} s")
    return Path(yml)


def move_runs_aside(out: Path, why: str) -> None:
    """Rename {out}/runs, when it holds anything, to {out}/runs-before-{time}: kept, not
    reused."""
    runs = out / "runs"
    if runs.is_dir() and any(runs.iterdir()):
        kept = out / f"runs-before-{time.strftime('%Y%m%d-%H%M%S')}"
        runs.rename(kept)
        print(f"demo: the runs in {runs} {why}; moved to {kept}")


def check_run_settings(out: Path, args: argparse.Namespace) -> None:
    """Keep {out}/runs only when {out}/runs/demo.json records the same RUN_SETTINGS as
    `args` (runs without a record are from an older demo); then record them."""
    wanted = {key: getattr(args, key) for key in RUN_SETTINGS}
    record = out / "runs" / "demo.json"
    saved = json.loads(record.read_text()) if record.is_file() else None
    if saved != wanted:
        changed = sorted(k for k in wanted if saved is None or saved.get(k) != wanted[k])
        move_runs_aside(out, "have no record of their settings" if saved is None else
                        f"were trained with other settings ({', '.join(changed)})")
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(wanted, indent=1) + "\n")


def train_argv(name: str, model_id: str, steps: int, yml: Path, out: Path,
               args: argparse.Namespace, start_from: Optional[str] = None) -> List[str]:
    """The run.py flags of one demo training run {out}/runs/{name}: from scratch with a small
    backbone (the --pretrain-steps opt-in), or `--finetune` from the checkpoint `start_from`
    (a file or pyannote/segmentation-3.0). Evaluation is a separate `run.py eval` (eval_argv)."""
    if start_from is None:
        start = ["--lstm-hidden", "64", "--lstm-layers", "2", "--linear-hidden", "64"]
    else:
        start = ["--finetune", "--checkpoint", str(start_from)]
    return ["--model", model_id, "--name", name, "--cdir", str(out),
            "--project", "runs", "--protocol", PROTOCOL,
            "--database", str(yml), "--video-dir", str(yml.parent / "video"),
            "--esize", str(args.esize), "--duration", str(args.duration),
            "--batch-size", str(args.batch_size), "--max-steps", str(steps),
            "--epochs", "100000", "--val-every", str(args.val_every),
            "--log-every", str(max(1, min(25, steps // 10))),
            "--workers", str(args.workers), "--seed", str(args.seed), "--device", args.device,
            *start, "--scheduler", args.scheduler,
            *(["--lr", str(args.lr)] if args.lr is not None else []),
            *(["--lr-pretrained", str(args.lr_pretrained)] if start_from is not None else []),
            *({True: ["--video-centering"], False: ["--no-video-centering"]}.get(
                args.video_centering, [])),
            *({True: ["--learned-locality"], False: ["--no-learned-locality"]}.get(
                args.learned_locality, []))]


def eval_argv(checkpoint: str, target: Path, yml: Path, args: argparse.Namespace, *,
              split: str = "test", clustering: str = "both", threshold: Optional[float] = None,
              video: bool = True, tune: Optional[str] = None) -> List[str]:
    """`run.py eval` of `checkpoint` on `split` into `target`: oracle and/or the full pipeline
    with CAM++ at `threshold`, collars 0 and 0.25; the video when `video` (a fusion model
    without it is the ablation); `tune`: the threshold sweep (--tune-threshold) instead."""
    return ["eval", "--checkpoint", str(checkpoint), "--database", str(yml),
            "--protocol", PROTOCOL, "--groundtruths", split, "--clustering", clustering,
            "--embedding", EMBEDDING, "--device", args.device, "--esize", str(args.esize),
            "--no-progress", "--out", str(target),
            *(["--video-dir", str(yml.parent / "video")] if video else []),
            *(["--threshold", f"{threshold:g}"] if threshold is not None else []),
            *(["--tune-threshold", tune] if tune is not None else [])]


def _checkpoint_stamp(checkpoint: str) -> Optional[int]:
    path = Path(checkpoint)
    return path.stat().st_mtime_ns if path.is_file() else None


def eval_is_done(target: Path, argv: List[str], checkpoint: str) -> bool:
    """True when `target` holds an evaluation (or sweep) made with the same `argv` from the
    same checkpoint file (recorded in {target}/demo-eval.json after it succeeded)."""
    record = target / "demo-eval.json"
    if not record.is_file():
        return False
    saved = json.loads(record.read_text())
    return saved == {"argv": argv, "checkpoint": _checkpoint_stamp(checkpoint)}


def record_eval(target: Path, argv: List[str], checkpoint: str) -> None:
    target.mkdir(parents=True, exist_ok=True)
    (target / "demo-eval.json").write_text(json.dumps(
        {"argv": argv, "checkpoint": _checkpoint_stamp(checkpoint)}) + "\n")


def run_jobs(jobs: List[Tuple[str, List[str]]], out: Path, parallel: int, threads: int,
             poll_s: float = 15.0) -> Dict[str, Tuple[int, float]]:
    """Run `python run.py ARGV` (train, then evaluate) for every (run name, argv), at most
    `parallel` at once with `threads` torch threads each, output to {out}/runs/{name}.log;
    print each run's latest progress line every `poll_s` seconds. Returns {run name: (exit
    status, seconds)}. Runs still going when this is interrupted are terminated (they
    resume from their last checkpoint)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    pending, running, done = list(jobs), {}, {}
    last_report = time.perf_counter()
    try:
        while pending or running:
            while pending and len(running) < parallel:
                name, argv = pending.pop(0)
                log = out / "runs" / f"{name}.log"
                log.parent.mkdir(parents=True, exist_ok=True)
                handle = open(log, "w", encoding="utf-8")
                process = subprocess.Popen([sys.executable, str(RUN_PY), *argv], stdout=handle,
                                           stderr=subprocess.STDOUT, env=env)
                running[name] = (process, handle, log, time.perf_counter())
                print(f"demo: {_label(name)} started; its output goes "
                      f"to {log}", flush=True)
            time.sleep(1.0)
            for name, (process, handle, log, started) in list(running.items()):
                if process.poll() is None:
                    continue
                handle.close()
                del running[name]
                done[name] = (process.returncode, time.perf_counter() - started)
                word = "done" if process.returncode == 0 else f"FAILED ({process.returncode})"
                print(f"demo: {_label(name)} {word} in {done[name][1]:.0f} s", flush=True)
                for prefix in ("local ", "oracle  collar=0 "):
                    if _latest(log, (prefix,)):
                        print(f"        {_latest(log, (prefix,))}", flush=True)
            now = time.perf_counter()
            if running and now - last_report >= poll_s:
                last_report = now
                for name, (_, _, log, started) in running.items():
                    print(f"demo: {name} [{now - started:4.0f} s] "
                          f"{_latest(log, ('step ', 'validation', 'eval', 'indexing'))}",
                          flush=True)
    finally:
        for process, handle, _, _ in running.values():
            process.terminate()
            process.wait()
            handle.close()
    return done


def _label(name: str) -> str:
    """'model6 (late)', 'pretrain (audio)'; other names as they are."""
    if name == PRETRAIN:
        return f"{name} ({MODELS['0']})"
    model_id = name[len("model"):]
    return f"{name} ({MODELS[model_id]})" if name.startswith("model") and model_id in MODELS \
        else name


def _latest(log: Path, prefixes: Tuple[str, ...]) -> str:
    """The last line of `log` (progress bars split on carriage returns) that starts with
    one of `prefixes`, shortened; '' when none yet."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    lines = [part.strip() for line in text.splitlines() for part in line.split("\r")]
    for line in reversed(lines):
        if line.startswith(prefixes):
            return line[:110]
    return ""


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def starting_point(out: Path, yml: Path, args: argparse.Namespace, cores: int,
                   done: Dict[str, Tuple[int, float]]) -> Optional[str]:
    """The checkpoint every compared model starts from: segmentation-3.0 from the weights
    cache, or (--pretrain-steps N) the from-scratch audio-only run trained here. None when
    the pretraining failed (its status is in `done`)."""
    if not args.pretrain_steps:
        return SEGMENTATION
    print(f"demo: --pretrain-steps {args.pretrain_steps}: starting from an audio-only model "
          f"trained from scratch here, NOT from {SEGMENTATION}", flush=True)
    done.update(run_jobs([(PRETRAIN, train_argv(PRETRAIN, "0", args.pretrain_steps, yml, out,
                                                args))], out, 1, cores))
    if done[PRETRAIN][0] != 0:
        return None
    return str(out / "runs" / PRETRAIN / "checkpoints" / "last.pt")


def missing_weights(args: argparse.Namespace) -> Optional[str]:
    """The one-line error when the weights the demo needs are not in the cache, else None
    (the --pretrain-steps opt-in needs none; without CAM++ its full pipeline fails)."""
    from core.weights import missing, weights_dir

    absent = missing([EMBEDDING] if args.pretrain_steps else [SEGMENTATION, EMBEDDING])
    if not absent:
        return None
    return (f"run.py demo: {', '.join(absent)} not in the weights cache {weights_dir()}: run "
            f"`make weights` (or `python run.py weights`) first"
            + ("" if args.pretrain_steps else
               ", or pass --pretrain-steps N to start from a model trained from scratch"))


def _trained(out: Path, name: str) -> str:
    checkpoints = out / "runs" / name / "checkpoints"
    best = checkpoints / "best.pt"
    return str(best if best.is_file() else checkpoints / "last.pt")


def _eval_jobs(specs: List[Tuple[str, str, Path, List[str]]], out: Path, parallel: int,
               threads: int, done: Dict[str, Tuple[int, float]]) -> None:
    """Run the evaluations (name, checkpoint, target, argv) not already done; record those
    that succeed."""
    todo = []
    for name, checkpoint, target, argv in specs:
        if eval_is_done(target, argv, checkpoint):
            print(f"demo: {name}: reusing the evaluation in {target}", flush=True)
        else:
            todo.append((name, argv))
    done.update(run_jobs(todo, out, parallel, threads))
    for name, checkpoint, target, argv in specs:
        if name in done and done[name][0] == 0:
            record_eval(target, argv, checkpoint)


def _cpu_seconds() -> float:
    """CPU seconds of this process and its finished children."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def _train_and_tune(out: Path, yml: Path, args: argparse.Namespace, ids: List[str],
                    start_from: str, parallel: int, threads: int,
                    done: Dict[str, Tuple[int, float]]) -> None:
    """The threshold sweep on development (zero-shot starting model) alongside the
    fine-tuning of every compared model."""
    runs = out / "runs"
    argv = eval_argv(start_from, runs / TUNING, yml, args, split="development",
                     clustering="full", video=False, tune=args.thresholds)
    print(f"demo: tuning the clustering threshold on the development split ({EMBEDDING} "
          f"embeddings, {start_from} as it is), while models {', '.join(ids)} fine-tune from "
          f"{start_from} for {args.steps} steps each ({args.batch_size} x {args.duration:g} s "
          f"chunks), {parallel} at a time with {threads} thread(s) each", flush=True)
    jobs = []
    if eval_is_done(runs / TUNING, argv, start_from):
        print(f"demo: reusing the threshold sweep in {runs / TUNING}", flush=True)
    else:
        jobs.append((TUNING, argv))
    jobs += [(f"model{m}", train_argv(f"model{m}", m, args.steps, yml, out, args, start_from))
             for m in ids]
    done.update(run_jobs(jobs, out, parallel, threads))
    if TUNING in done and done[TUNING][0] == 0:
        record_eval(runs / TUNING, argv, start_from)


def _evaluate_all(out: Path, yml: Path, args: argparse.Namespace, ids: List[str],
                  start_from: str, threshold: float, parallel: int, threads: int,
                  done: Dict[str, Tuple[int, float]]) -> None:
    """The starting model as it is (step 0), every fine-tuned model, every fusion model
    without its video, on the test split."""
    runs = out / "runs"
    specs = [(STEP0, start_from, runs / STEP0,
              eval_argv(start_from, runs / STEP0, yml, args, threshold=threshold, video=False))]
    for m in ids:
        checkpoint = _trained(out, f"model{m}")
        target = runs / f"model{m}" / "eval"
        specs.append((f"model{m}-eval", checkpoint, target,
                      eval_argv(checkpoint, target, yml, args, threshold=threshold)))
        if m != "0":
            target = runs / f"model{m}{NO_VIDEO}"
            specs.append((f"model{m}{NO_VIDEO}", checkpoint, target, eval_argv(
                checkpoint, target, yml, args, clustering="oracle", video=False)))
    _eval_jobs(specs, out, parallel, threads, done)


def main(args: argparse.Namespace) -> int:
    from data.cli import describe_speech, speech_source
    from eval.compare import compare

    out = Path(args.out)
    ids = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in ids if m not in MODELS]
    if unknown or not ids:
        print(f"run.py demo: --models takes ids among {sorted(MODELS)}, got {args.models!r}",
              file=sys.stderr)
        return 2
    if args.steps < 1 or args.pretrain_steps < 0:
        print(f"run.py demo: --steps must be >= 1 and --pretrain-steps >= 0, got "
              f"{args.steps} and {args.pretrain_steps}", file=sys.stderr)
        return 2
    error = missing_weights(args)
    if error:
        print(error, file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        args.speech = speech_source(args.speech)
        print(f"demo: {describe_speech(args.speech)}", flush=True)
        yml = database(out, args)
    except ValueError as error:
        print(f"run.py demo: {error}", file=sys.stderr)
        return 2
    check_run_settings(out, args)
    cores = os.cpu_count() or 1
    gpu = args.device == "cuda" or (args.device == "auto" and _cuda_available())
    parallel = args.parallel or (1 if gpu or cores < 2 else 2)
    threads = max(1, cores // parallel)
    done: Dict[str, Tuple[int, float]] = {}
    runs = out / "runs"
    threshold = None
    try:
        start_from = starting_point(out, yml, args, cores, done)
        if start_from is not None:
            _train_and_tune(out, yml, args, ids, start_from, parallel, threads, done)
        # a model whose training failed (e.g. diverged) is left out; the others go on
        ids = [m for m in ids if done.get(f"model{m}", (0, 0.0))[0] == 0]
        if start_from is not None and ids and done.get(TUNING, (0, 0.0))[0] == 0:
            threshold = json.loads((runs / TUNING / "threshold.json").read_text())["best"]
            print(f"demo: clustering threshold {threshold:g} (lowest full-pipeline DER on the "
                  f"development split: {runs / TUNING / 'threshold.json'}); evaluating "
                  f"{STEP0} and models {', '.join(ids)} on the test split", flush=True)
            _evaluate_all(out, yml, args, ids, start_from, threshold, parallel, threads, done)
    except KeyboardInterrupt:
        print("\ndemo: interrupted; a new `run.py demo` resumes every model from its last "
              "checkpoint", file=sys.stderr)
        return 130
    failed = [name for name, (status, _) in done.items() if status != 0]
    for name in failed:
        print(f"run.py demo: {name} failed; see {runs / f'{name}.log'}", file=sys.stderr)
    diverged = [name for name in failed if _diverged(runs / f"{name}.log")]
    if threshold is None or any(not name.startswith("model") or name.endswith("-eval")
                                for name in failed):
        return 1
    table = compare([str(runs / STEP0)] + [str(runs / f"model{m}{suffix}") for m in ids
                                           for suffix in ("", NO_VIDEO)
                                           if m != "0" or not suffix], str(out))
    with open(table, "a", encoding="utf-8") as handle:
        handle.write(f"\n{STEP0}: {start_from} as it is (the step-0 DER of every model); "
                     f"model<id>: after {args.steps} fine-tuning steps from it; {NO_VIDEO}: the "
                     f"fusion model without its video (oracle only). "
                     f"{describe_speech(args.speech)}. Full pipeline: {EMBEDDING} embeddings, "
                     f"clustering threshold {threshold:g} tuned on the development split "
                     f"({runs / TUNING / 'threshold.json'}).\n")
        for name in diverged:
            handle.write(f"\n{name}: diverged during fine-tuning (non-finite losses; "
                         f"{runs / f'{name}.log'}), left out of the table.\n")
    print()
    print(Path(table).read_text())
    times = ", ".join(f"{name} {s:.0f} s" for name, (_, s) in done.items())
    print(f"demo: finished in {time.perf_counter() - started:.0f} s wall, "
          f"{_cpu_seconds():.0f} s CPU ({times})")
    print(f"demo: table {out / 'comparison.md'} (also .csv, .png); per model: "
          f"{runs / 'model<id>'}/ (train.log, tensorboard/, checkpoints/, eval/ with "
          f"RTTMs, reports and plots)")
    print(f"demo: tensorboard --logdir {runs}")
    # a model that diverged is a measured outcome (said above and under the table);
    # any other failure is an error
    return 1 if set(failed) - set(diverged) else 0


def _diverged(log: Path) -> bool:
    """Whether a training run's log says it stopped on non-finite losses."""
    try:
        return "non-finite losses" in log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
