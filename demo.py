"""`python run.py demo [--out demo]`: the whole study in small, on the synthetic database.

An entry-level module beside run.py (it launches `run.py train` and `run.py eval` as
subprocesses, so it sits above train/ and eval/); the comparison table it ends with is
eval/compare.py's.

1. generate the synthetic audio-visual database into {out}/db (kept and reused when its
   settings match; regenerated when they do not);
2. pretrain: train the audio-only model from scratch for --pretrain-steps into
   {out}/runs/pretrain. It stands in for `pyannote/segmentation-3.0`, which the real study
   starts from and which cannot be downloaded everywhere;
3. train the audio-only model (0) and models 6 (late), 7 (early) and 8 (hybrid) from that
   checkpoint (`--finetune`: the fusion parts start as the identity, so at step 0 all four
   compute the same thing), with the same data, seed and number of steps, into
   {out}/runs/model{id} (TensorBoard logs, checkpoints, train.log; the run's output in
   {out}/runs/{name}.log). The only difference between the four is the video path, which
   makes their comparison a paired one. `--pretrain-steps 0` trains all four from scratch
   instead. On a CPU two models train at once with one thread each (small LSTMs use two
   cores better that way); progress is printed every 15 s. A run that already reached its
   steps is not trained again, only re-evaluated; an interrupted one resumes;
4. evaluate each on the test split: local (chunk) DER, full-file DER with oracle clustering,
   and the full pipeline when WeSpeaker weights can be loaded (RTTMs, reports, plots under
   {out}/runs/{name}/eval); then each fusion model once more without its video, into
   {out}/runs/model{id}-novideo: the same trained model on audio alone, so the difference
   is what the video adds to that model, free of the training noise that separates two
   separately trained models (on the demo, seed to seed, that noise is as large as the
   differences between the models);
5. compare them in {out}/comparison.{md,csv,png} and print the table.

Runs in {out}/runs are kept for the database and the training settings they were trained
with ({out}/runs/demo.json); when either changes they are moved to {out}/runs-before-{time}
(more --steps only continue them). Everything is measured as it runs; nothing in the table
is fixed in advance.
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
PRETRAIN = "pretrain"  # the run every compared model starts from
NO_VIDEO = "-novideo"  # suffix of a fusion model's evaluation without its video
# demo settings that change what a run learns; more --steps only continue the runs
RUN_SETTINGS = ("pretrain_steps", "batch_size", "duration", "seed", "lr", "lr_pretrained",
                "scheduler", "video_centering", "learned_locality")
# The pretrained parts fine-tune at a tenth of training's 1e-3: at 1e-3 the fusion models'
# audio paths fell behind the audio-only model's (README, "What the video adds").
LR_PRETRAINED = 1e-4
RUN_PY = Path(__file__).resolve().parent / "run.py"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo", help="demo folder (default: demo)")
    parser.add_argument("--models", default="0,6,7,8",
                        help="comma-separated model ids to train (default: 0,6,7,8)")
    parser.add_argument("--steps", type=int, default=150,
                        help="training steps of each compared model (default: 150)")
    parser.add_argument("--pretrain-steps", type=int, default=300,
                        help="steps of the audio-only model that every compared model starts "
                             "from (default: 300); 0: train them from scratch")
    parser.add_argument("--batch-size", type=int, default=16, help="chunks per step (default 16)")
    parser.add_argument("--duration", type=float, default=5.0,
                        help="training chunk length in seconds (default 5)")
    parser.add_argument("--val-every", type=int, default=50,
                        help="steps between validations (default 50)")
    parser.add_argument("--workers", type=int, default=0,
                        help="data loader workers (default 0: the step, not the data, is slow)")
    parser.add_argument("--files", type=int, default=6, help="synthetic files per split")
    parser.add_argument("--minutes", type=float, default=20.0,
                        help="synthetic minutes of train audio (default 20: the pretraining "
                             "sees each second about 20 times; with 4 it saw each 100 times "
                             "and the fine-tuned models learned it by heart)")
    parser.add_argument("--eval-minutes", type=float, default=4.0,
                        help="synthetic minutes of development and of test audio (default 4)")
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
    from data.synthetic import generate_database

    db = out / "db"
    # generate_database's arguments, compared with what it recorded in synthetic.json
    wanted = {"files": args.files, "minutes": float(args.minutes),
              "eval_minutes": float(args.eval_minutes), "esize": args.esize, "seed": args.seed,
              "pairs": args.pairs, "singles": args.singles,
              "look_alike_spread": args.look_alike_spread}
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
               args: argparse.Namespace, start_from: Optional[Path] = None,
               evaluate: bool = True) -> List[str]:
    """The run.py flags of one demo run {out}/runs/{name} (the old scripts' flags where
    they exist): from scratch with the demo's small backbone, or `--finetune` from the
    checkpoint `start_from` (its backbone); evaluated on the test split when `evaluate`."""
    if start_from is None:
        start = ["--lstm-hidden", "64", "--lstm-layers", "2", "--linear-hidden", "64"]
    else:
        start = ["--finetune", "--checkpoint", str(start_from)]
    return ["--model", model_id, "--name", name, "--cdir", str(out),
            "--project", "runs", "--protocol", "Synthetic.SpeakerDiarization.AV",
            "--database", str(yml), "--video-dir", str(yml.parent / "video"),
            "--esize", str(args.esize), "--duration", str(args.duration),
            "--batch-size", str(args.batch_size), "--max-steps", str(steps),
            "--epochs", "100000", "--val-every", str(args.val_every),
            "--log-every", str(max(1, min(25, steps // 10))),
            "--workers", str(args.workers), "--seed", str(args.seed), "--device", args.device,
            *start, *(["--groundtruths", "test"] if evaluate else []),
            "--scheduler", args.scheduler,
            *(["--lr", str(args.lr)] if args.lr is not None else []),
            *(["--lr-pretrained", str(args.lr_pretrained)] if start_from is not None else []),
            *({True: ["--video-centering"], False: ["--no-video-centering"]}.get(
                args.video_centering, [])),
            *({True: ["--learned-locality"], False: ["--no-learned-locality"]}.get(
                args.learned_locality, []))]


def no_video_argv(model_id: str, yml: Path, out: Path, args: argparse.Namespace) -> List[str]:
    """`run.py eval` of {out}/runs/model{id}'s best checkpoint on the test split without
    its video (oracle clustering), into {out}/runs/model{id}-novideo: the same trained
    model on audio alone, so its difference to model{id} is what the video adds to it,
    free of the training noise that separates two trained models."""
    return ["eval", "--checkpoint", str(out / "runs" / f"model{model_id}" / "checkpoints"
                                        / "best.pt"),
            "--database", str(yml), "--protocol", "Synthetic.SpeakerDiarization.AV",
            "--groundtruths", "test", "--clustering", "oracle", "--device", args.device,
            "--out", str(out / "runs" / f"model{model_id}{NO_VIDEO}")]


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


def main(args: argparse.Namespace) -> int:
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
    started = time.perf_counter()
    try:
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
    try:
        start_from = None
        if args.pretrain_steps:
            print(f"demo: pretraining the audio-only model for {args.pretrain_steps} steps "
                  f"({args.batch_size} x {args.duration:g} s chunks, {cores} thread(s)); "
                  f"every compared model starts from it", flush=True)
            done.update(run_jobs([(PRETRAIN, train_argv(
                PRETRAIN, "0", args.pretrain_steps, yml, out, args, evaluate=False))],
                out, 1, cores))
            start_from = out / "runs" / PRETRAIN / "checkpoints" / "last.pt"
        if all(status == 0 for status, _ in done.values()):
            how = "from scratch" if start_from is None else f"from {start_from}"
            print(f"demo: training models {', '.join(ids)} {how} for {args.steps} steps each "
                  f"({args.batch_size} x {args.duration:g} s chunks), {parallel} at a time "
                  f"with {threads} thread(s) each; then each is evaluated on the test split",
                  flush=True)
            done.update(run_jobs([(f"model{m}", train_argv(f"model{m}", m, args.steps, yml,
                                                           out, args, start_from))
                                  for m in ids], out, parallel, threads))
    except KeyboardInterrupt:
        print("\ndemo: interrupted; a new `run.py demo` resumes every model from its last "
              "checkpoint", file=sys.stderr)
        return 130
    fusion_ids = [m for m in ids if m != "0"]
    if fusion_ids and all(status == 0 for status, _ in done.values()):
        print(f"demo: evaluating models {', '.join(fusion_ids)} again without their video "
              f"(the same trained model on audio alone: what the video adds to it)", flush=True)
        done.update(run_jobs([(f"model{m}{NO_VIDEO}", no_video_argv(m, yml, out, args))
                              for m in fusion_ids], out, parallel, threads))
    failed = [name for name, (status, _) in done.items() if status != 0]
    if failed:
        for name in failed:
            print(f"run.py demo: {name} failed; see {out / 'runs' / f'{name}.log'}",
                  file=sys.stderr)
        return 1
    table = compare([str(out / "runs" / f"model{m}{suffix}") for m in ids
                     for suffix in ("", NO_VIDEO) if m != "0" or not suffix], str(out))
    print()
    print(Path(table).read_text())
    print(f"demo: finished in {time.perf_counter() - started:.0f} s "
          f"({', '.join(f'{name} {s:.0f} s' for name, (_, s) in done.items())})")
    print(f"demo: table {out / 'comparison.md'} (also .csv, .png); per model: "
          f"{out / 'runs' / 'model<id>'}/ (train.log, tensorboard/, checkpoints/, eval/ with "
          f"RTTMs, reports and plots)")
    print(f"demo: tensorboard --logdir {out / 'runs'}")
    return 0
