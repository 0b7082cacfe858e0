"""What rank 0 writes while training: TensorBoard scalars and a text log (train.log).

Other ranks get a `NullLog` with the same methods doing nothing, so the loop never asks
`if rank == 0`. The x-axis is always the global optimizer step. A resumed run opens the
same folder with purge_step = the checkpoint's step + 1, so curves continue without the
points logged after the checkpoint by the interrupted run.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional

if TYPE_CHECKING:
    from train.config import Config


class NullLog:
    """The log of non-zero ranks: accepts everything, writes nothing."""

    def info(self, message: str) -> None:
        pass

    def scalar(self, tag: str, value: float, step: int) -> None:
        pass

    def scalars(self, values: Dict[str, float], step: int) -> None:
        pass

    def text(self, tag: str, text: str, step: int) -> None:
        pass

    def hparams(self, hparams: Dict[str, Any], metrics: Dict[str, float], step: int) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class RunLog(NullLog):
    """TensorBoard under {experiment}/tensorboard and lines appended to {experiment}/train.log."""

    def __init__(self, experiment_dir: Path, purge_step: Optional[int] = None,
                 echo: bool = True):
        from torch.utils.tensorboard import SummaryWriter

        experiment_dir = Path(experiment_dir)
        experiment_dir.mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(str(experiment_dir / "tensorboard"), purge_step=purge_step)
        self.text_file = open(experiment_dir / "train.log", "a", buffering=1, encoding="utf-8")
        self.echo = echo

    def info(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        for line in message.splitlines() or [""]:
            self.text_file.write(f"{stamp} {line}\n")
        if self.echo:
            print(message, file=sys.stdout, flush=True)

    def scalar(self, tag: str, value: float, step: int) -> None:
        self.writer.add_scalar(tag, float(value), global_step=step)

    def scalars(self, values: Dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self.scalar(tag, value, step)

    def text(self, tag: str, text: str, step: int) -> None:
        self.writer.add_text(tag, text, global_step=step)

    def hparams(self, hparams: Dict[str, Any], metrics: Dict[str, float], step: int) -> None:
        """The run's settings next to its final metrics (TensorBoard's HPARAMS tab)."""
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        plain = {k: (v if isinstance(v, (int, float, str, bool)) else json.dumps(v))
                 for k, v in hparams.items()}
        plain = {k: v for k, v in plain.items() if v is not None}
        experiment, start, end = hparams_summary(plain, metrics)
        file_writer = self.writer._get_file_writer()
        for summary in (experiment, start, end):
            file_writer.add_summary(summary)
        for tag, value in metrics.items():
            self.writer.add_scalar(tag, float(value), global_step=step)

    def flush(self) -> None:
        self.writer.flush()
        self.text_file.flush()

    def close(self) -> None:
        self.writer.close()
        self.text_file.close()


def make_log(is_main: bool, experiment_dir: Path, purge_step: Optional[int] = None) -> NullLog:
    """RunLog on rank 0, NullLog elsewhere."""
    return RunLog(experiment_dir, purge_step) if is_main else NullLog()


def format_duration(seconds: float) -> str:
    """Seconds as 1h02m03s."""
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"


def config_text(config: "Config") -> str:
    """Every setting but the token, one `key: value` a line."""
    return "\n".join(f"{k}: {v}" for k, v in sorted(config.to_dict().items())
                     if k != "hf_token")


def hparams_of(config: "Config") -> Dict[str, Any]:
    """The settings shown in TensorBoard's HPARAMS tab (lists joined by commas)."""
    keys = ("model", "finetune", "esize", "duration", "batch_size", "lr", "lr_pretrained",
            "weight_decay", "scheduler", "grad_clip", "amp", "freeze", "modality_dropout",
            "seed", "epochs")
    values = config.to_dict()
    return {k: (",".join(values[k]) if isinstance(values[k], list) else values[k])
            for k in keys}
