"""Every training setting in one dataclass; flags map to its fields (train/cli.py).

The resolved config is saved as {experiment}/config.json and inside every checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from core.constants import AMP_MODES
from core.models import MODEL_CHOICES, model_name
from core.parts import PARTS

SCHEDULERS = ("constant", "cosine", "linear")


def canonical_model(model: Any) -> str:
    """'6' / 6 / 'late' -> 'late' (core.models.model_name); raises ValueError naming --model
    and the choices."""
    try:
        return model_name(model)
    except ValueError:
        raise ValueError(f"unknown --model {model!r}; choose {MODEL_CHOICES}") from None


@dataclass
class Config:
    """Training settings. Durations in seconds; steps are optimizer steps (global batches)."""

    # --- model ---
    model: str = "audio"                 # 0/audio, 6/late, 7/early, 8/hybrid (core/models.py)
    finetune: bool = False               # start from --checkpoint's weights
    checkpoint: str = "pyannote/segmentation-3.0"   # Hub id, file or folder
    revision: Optional[str] = None
    hf_token: Optional[str] = None       # else $HF_TOKEN / the Hugging Face login
    esize: Optional[int] = None          # video embedding size (fusion models)
    modality_dropout: Optional[float] = None   # drop a chunk's video in training (None: model's)
    # small-model overrides (None keeps the architecture's default / the checkpoint's)
    lstm_hidden: Optional[int] = None
    lstm_layers: Optional[int] = None
    lstm_dropout: Optional[float] = None
    linear_hidden: Optional[int] = None
    d_model: Optional[int] = None        # co-attention width
    fusion_layers: Optional[int] = None  # co-attention layers
    fusion_heads: Optional[int] = None
    locality_tau: Optional[float] = None  # co-attention prefers frames within ~tau seconds
    video_centering: Optional[bool] = None  # subtract each chunk's mean video (None: model's, on)
    learned_locality: Optional[bool] = None  # per-head learned time bias in co-attention
    #                                         (None: model's, on unless --locality-tau)
    # --- data ---
    protocol: Optional[str] = None       # pyannote.database protocol name
    database: Optional[str] = None       # database.yml (else $PYANNOTE_DATABASE_CONFIG)
    video_dir: Optional[str] = None      # folder of {uri}.npy video embeddings
    video_fps: float = 25.0
    duration: Optional[float] = None     # chunk seconds (None: the checkpoint's, else 10)
    batch_size: int = 32                 # chunks per step per process
    workers: int = 4                     # DataLoader workers per process
    # --- optimisation ---
    epochs: int = 50
    max_steps: Optional[int] = None      # stop after this many steps (whatever the epoch)
    lr: float = 1e-3                     # Adam, as pyannote; new (fusion) parts
    lr_pretrained: Optional[float] = None  # pretrained parts (None: --lr)
    weight_decay: float = 0.0            # > 0 switches Adam to AdamW
    scheduler: str = "constant"          # constant | cosine | linear (to 0 at the end)
    warmup_steps: int = 0
    grad_clip: Optional[float] = 5.0     # max gradient norm (None or 0: no clipping)
    amp: str = "off"                     # off | bf16 | fp16 (fp16 uses a GradScaler)
    freeze: List[str] = field(default_factory=list)  # parts kept fixed
    freeze_lstm: bool = False            # the old dihard.py behaviour of model 6
    seed: int = 0
    device: str = "auto"                 # auto | cpu | cuda
    # --- validation, checkpoints, stopping ---
    val_every: Optional[int] = None      # steps between validations (None: each epoch)
    val_at_start: bool = True            # validate at step 0 (the starting DER)
    patience: Optional[int] = None       # stop after this many validations without progress
    checkpoint_every: Optional[int] = None  # also keep checkpoints/step-XXXXXXX.pt
    keep_checkpoints: int = 0            # step-N files kept (0: all)
    resume: str = "auto"                 # auto | never | PATH
    exact_resume: bool = True            # CUDA: re-seed cuDNN's LSTM dropout every step, so a
                                         # resumed run equals an uninterrupted one (~9 % of a
                                         # batch-32 bf16 step on an H100)
    log_every: int = 50                  # progress line and train/* scalars
    max_nonfinite: int = 10              # stop after this many non-finite losses in a row
    # --- experiment folder: {cdir}/{project}/{name} ---
    cdir: str = "experiments"
    project: str = "avdiar"
    name: Optional[str] = None           # None: derived from the settings
    # --- evaluation after training (run.py with no subcommand) ---
    groundtruths: Optional[str] = None   # "test" or FILE.rttm
    collar: float = 0.0
    skip_overlap: bool = False

    def __post_init__(self) -> None:
        self.model = canonical_model(self.model)
        if isinstance(self.freeze, str):
            self.freeze = [p.strip() for p in self.freeze.split(",") if p.strip()]
        self.freeze = list(self.freeze)
        if self.freeze_lstm and "lstm" not in self.freeze:
            self.freeze.append("lstm")
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the flag for settings that cannot work."""
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(message)

        need(self.amp in AMP_MODES, f"--amp must be one of {AMP_MODES}, got {self.amp!r}")
        need(self.scheduler in SCHEDULERS,
             f"--scheduler must be one of {SCHEDULERS}, got {self.scheduler!r}")
        unknown = [p for p in self.freeze if p not in PARTS]
        need(not unknown, f"--freeze: unknown part(s) {unknown}; parts are {list(PARTS)}")

        def number(flag: str, value: Any, low: float, *, above: bool = False,
                   optional: bool = True, whole: bool = False) -> None:
            """value finite and >= low (> low with above); None only where optional."""
            if value is None and optional:
                return
            kind = "an integer" if whole else "a finite number"
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            ok = ok and (not whole or float(value).is_integer()) and math.isfinite(value)
            need(ok and (value > low if above else value >= low),
                 f"{flag} must be {kind} {'>' if above else '>='} {low:g}, got {value!r}")

        for flag, value in (("--batch-size", self.batch_size), ("--epochs", self.epochs),
                            ("--log-every", self.log_every),
                            ("--max-nonfinite", self.max_nonfinite)):
            number(flag, value, 1, optional=False, whole=True)
        for flag, value in (("--workers", self.workers), ("--warmup-steps", self.warmup_steps),
                            ("--keep-checkpoints", self.keep_checkpoints)):
            number(flag, value, 0, optional=False, whole=True)
        for flag, value in (("--esize", self.esize), ("--lstm-hidden", self.lstm_hidden),
                            ("--lstm-layers", self.lstm_layers),
                            ("--linear-hidden", self.linear_hidden), ("--d-model", self.d_model),
                            ("--fusion-layers", self.fusion_layers),
                            ("--fusion-heads", self.fusion_heads),
                            ("--val-every", self.val_every), ("--patience", self.patience),
                            ("--checkpoint-every", self.checkpoint_every)):
            number(flag, value, 1, whole=True)
        number("--max-steps", self.max_steps, 0, whole=True)
        number("--lr", self.lr, 0, above=True, optional=False)
        number("--lr-pretrained", self.lr_pretrained, 0)
        number("--weight-decay", self.weight_decay, 0, optional=False)
        number("--grad-clip", self.grad_clip, 0)
        number("--duration", self.duration, 0, above=True)
        number("--video-fps", self.video_fps, 0, above=True, optional=False)
        number("--locality-tau", self.locality_tau, 0, above=True)
        number("--collar", self.collar, 0, optional=False)
        number("--lstm-dropout", self.lstm_dropout, 0)
        need(self.lstm_dropout is None or self.lstm_dropout < 1.0,
             f"--lstm-dropout must be in [0, 1), got {self.lstm_dropout}")
        number("--modality-dropout", self.modality_dropout, 0)
        need(self.modality_dropout is None or self.modality_dropout < 1.0,
             f"--modality-dropout must be in [0, 1), got {self.modality_dropout}")
        need(self.d_model is None or self.fusion_heads is None
             or self.d_model % self.fusion_heads == 0,
             f"--d-model ({self.d_model}) must be a multiple of --fusion-heads "
             f"({self.fusion_heads})")
        need(not (self.finetune and any(v is not None for v in (
            self.lstm_hidden, self.lstm_layers, self.lstm_dropout, self.linear_hidden))),
            "--lstm-*/--linear-hidden change the pretrained architecture; they cannot be "
            "used with --finetune")
        need(not (self.learned_locality and self.locality_tau is not None),
             "--learned-locality and --locality-tau exclude each other (learned or fixed "
             "widths)")
        need(self.device in ("auto", "cpu", "cuda"),
             f"--device must be auto, cpu or cuda, got {self.device!r}")

    # --- naming and files ---
    @property
    def run_name(self) -> str:
        """--name, or one derived from the settings, e.g. 'late-ft-e384'."""
        if self.name:
            return self.name
        parts = [self.model, "ft" if self.finetune else "scratch"]
        if self.model != "audio" and self.esize:
            parts.append(f"e{self.esize}")
        if self.freeze:
            parts.append("frz-" + "-".join(self.freeze))
        return "-".join(parts)

    @property
    def experiment_dir(self) -> Path:
        return Path(self.cdir) / self.project / self.run_name

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: Optional[Path] = None) -> Path:
        """Write config.json (default: in the experiment folder); the HF token is left out."""
        path = Path(path) if path is not None else self.experiment_dir / "config.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = self.to_dict()
        data["hf_token"] = None
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Config":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config field(s) {unknown}")
        return cls(**data)

    @classmethod
    def load(cls, path: Path) -> "Config":
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"cannot read config {path}: {error}") from error
        return cls.from_dict(data)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "Config":
        """Fields from parsed flags (attribute names = field names); others are ignored."""
        values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
                  if hasattr(args, f.name)}
        return cls(**values)
