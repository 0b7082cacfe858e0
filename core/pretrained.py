"""Build a model from a checkpoint: pyannote's (segmentation-3.0) or avdiar's own.

    from core import load_pretrained
    model = load_pretrained("pyannote/segmentation-3.0", model=6, esize=384, token=...)

The audio parts are filled through one explicit key table (pyannote key -> our key,
shapes asserted); loading fails with the list of every unused key and every unfilled
parameter. Fusion parts that an audio-only checkpoint cannot hold stay at their
function-preserving initialisation.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn

from core.hub import resolve_checkpoint
from core.parts import AUDIO_PARTS, part_of
from core.safe_pickle import CorruptCheckpointError, Record, load_checkpoint_file, to_plain

log = logging.getLogger(__name__)

BACKBONE_KEYS = ("sincnet", "lstm", "linear", "num_speakers", "powerset_max", "duration_s")
SINCNET_KEYS = (
    "wav_norm1d.weight", "wav_norm1d.bias",
    "conv1d.0.filterbank.low_hz_", "conv1d.0.filterbank.band_hz_",
    "conv1d.0.filterbank.window_", "conv1d.0.filterbank.n_",
    "conv1d.1.weight", "conv1d.1.bias", "conv1d.2.weight", "conv1d.2.bias",
    "norm1d.0.weight", "norm1d.0.bias", "norm1d.1.weight", "norm1d.1.bias",
    "norm1d.2.weight", "norm1d.2.bias",
)
LSTM_TENSORS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


class CheckpointMismatchError(RuntimeError):
    """The checkpoint's tensors do not fit the model built from its hyper-parameters."""


# --- reading -------------------------------------------------------------------------
def read_checkpoint(path: str, map_location: str = "cpu") -> Dict[str, Any]:
    """The checkpoint as a dict: a pickle (read safely) or a safetensors file."""
    if str(path).endswith(".safetensors"):
        try:
            from safetensors import safe_open
        except ImportError:
            raise ImportError(
                f"{path}: reading .safetensors needs the safetensors package "
                "(pip install 'avdiar[safetensors]')") from None
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            state = {key: handle.get_tensor(key) for key in handle.keys()}
            metadata = handle.metadata() or {}
        checkpoint: Dict[str, Any] = {"state_dict": state}
        if "hyper_parameters" in metadata:
            checkpoint["hyper_parameters"] = json.loads(metadata["hyper_parameters"])
        if "model_hparams" in metadata:
            checkpoint = {"model_state": state,
                          "model_hparams": json.loads(metadata["model_hparams"])}
        return checkpoint
    checkpoint = load_checkpoint_file(path, map_location="cpu")
    if not isinstance(checkpoint, dict):
        raise CorruptCheckpointError(
            f"{path}: expected a dict checkpoint, found {type(checkpoint).__name__}")
    return checkpoint


def _specifications(checkpoint: Dict[str, Any]) -> Optional[Record]:
    specs = (checkpoint.get("pyannote.audio") or {}).get("specifications")
    if isinstance(specs, (tuple, list)):
        if len(specs) != 1:
            raise CheckpointMismatchError(
                f"multi-task checkpoints are not supported ({len(specs)} specifications)")
        specs = specs[0]
    return specs if isinstance(specs, Record) else None


def _lstm_from_state(state: Dict[str, torch.Tensor]) -> Dict[str, Any]:
    """LSTM sizes read off the tensors (for checkpoints without hyper-parameters)."""
    monolithic = "lstm.weight_hh_l0" in state
    prefix = "lstm.weight_hh_l" if monolithic else "lstm.{}.weight_hh_l0"
    layers = 0
    while (prefix + str(layers) if monolithic else prefix.format(layers)) in state:
        layers += 1
    first = state["lstm.weight_hh_l0" if monolithic else "lstm.0.weight_hh_l0"]
    bidirectional = any(key.endswith("_reverse") for key in state if key.startswith("lstm."))
    return {"hidden_size": int(first.shape[1]), "num_layers": layers,
            "bidirectional": bidirectional, "monolithic": monolithic, "dropout": 0.0}


def pyannote_hparams(checkpoint: Dict[str, Any], path: str = "") -> Dict[str, Any]:
    """build_model hyper-parameters of a pyannote (Lightning) checkpoint."""
    state = checkpoint["state_dict"]
    hyper = to_plain(checkpoint.get("hyper_parameters") or {})
    if hyper.get("sample_rate", 16000) != 16000 or hyper.get("num_channels", 1) != 1:
        raise CheckpointMismatchError(
            f"{path}: the model expects {hyper.get('sample_rate')} Hz, "
            f"{hyper.get('num_channels')} channel(s); avdiar supports 16 kHz mono")
    lstm = dict(hyper.get("lstm") or _lstm_from_state(state))
    if "linear" in hyper:
        linear = dict(hyper["linear"])
    else:
        num = sum(1 for key in state if key.startswith("linear.") and key.endswith(".weight"))
        hidden = int(state["linear.0.weight"].shape[0]) if num else 128
        linear = {"hidden_size": hidden, "num_layers": num}
    num_classes = int(state["classifier.weight"].shape[0])
    specs = _specifications(checkpoint)
    duration_s, powerset_max, num_speakers = 10.0, 2, 3
    if specs is not None:
        problem = to_plain(specs.field("problem"))
        classes = to_plain(specs.field("classes")) or []
        duration_s = float(specs.field("duration") or duration_s)
        num_speakers = len(classes)
        if problem == "MULTI_LABEL_CLASSIFICATION":
            powerset_max = 0
        elif problem == "MONO_LABEL_CLASSIFICATION" and specs.field("powerset_max_classes"):
            powerset_max = int(specs.field("powerset_max_classes"))
        else:
            raise CheckpointMismatchError(
                f"{path}: unsupported problem {problem!r}: avdiar reads powerset and multi-label "
                "segmentation checkpoints")
    elif num_classes != 7:
        powerset_max, num_speakers = 0, num_classes
    return {"model": "audio", "sincnet": dict(hyper.get("sincnet") or {"stride": 10}),
            "lstm": lstm, "linear": linear, "num_speakers": num_speakers,
            "powerset_max": powerset_max, "duration_s": duration_s}


# --- the key table -----------------------------------------------------------------
def audio_key_table(hparams: Dict[str, Any]) -> List[Tuple[str, str]]:
    """(pyannote key, avdiar key) for every tensor of the audio backbone.

    pyannote's monolithic LSTM has our names; its non-monolithic variant (one nn.LSTM per
    layer, `lstm.{i}.weight_ih_l0`) maps onto the layers of our single nn.LSTM.
    """
    lstm = hparams["lstm"]
    monolithic = lstm.get("monolithic", True)
    directions = ("", "_reverse") if lstm.get("bidirectional", True) else ("",)
    table = [(f"sincnet.{key}", f"sincnet.{key}") for key in SINCNET_KEYS]
    for layer in range(int(lstm["num_layers"])):
        for direction in directions:
            for tensor in LSTM_TENSORS:
                ours = f"lstm.{tensor}_l{layer}{direction}"
                theirs = ours if monolithic else f"lstm.{layer}.{tensor}_l0{direction}"
                table.append((theirs, ours))
    for index in range(int(hparams["linear"]["num_layers"])):
        table += [(f"linear.{index}.weight",) * 2, (f"linear.{index}.bias",) * 2]
    table += [("classifier.weight",) * 2, ("classifier.bias",) * 2]
    return table


def _fill(model: nn.Module, state: Dict[str, torch.Tensor], table: List[Tuple[str, str]],
          path: str) -> List[str]:
    """Copy `state` into `model` through `table`; return the target keys left unfilled."""
    target = model.state_dict()
    unused = sorted(set(state) - {source for source, _ in table})
    unfilled, wrong = [], []
    filled = set()
    with torch.no_grad():
        for source, ours in table:
            if ours not in target:
                wrong.append(f"{source}: the model has no parameter {ours}")
                continue
            if source not in state:
                unfilled.append(ours)
                continue
            value, slot = state[source], target[ours]
            audio_inputs = getattr(model, "lstm_audio_inputs", None)
            if (value.shape != slot.shape and ours.startswith("lstm.weight_ih_l0")
                    and audio_inputs and value.shape == (slot.shape[0], audio_inputs)):
                slot[:, :audio_inputs].copy_(value)  # model 8: video columns stay zero
            elif value.shape != slot.shape:
                wrong.append(f"{source}: checkpoint shape {tuple(value.shape)}, "
                             f"model {ours} shape {tuple(slot.shape)}")
                continue
            else:
                slot.copy_(value)
            filled.add(ours)
    new = [key for key in target if key not in filled and part_of(key) == "fusion"]
    unfilled += [key for key in target
                 if key not in filled and key not in unfilled and part_of(key) in AUDIO_PARTS]
    problems = []
    if wrong:
        problems.append("shape mismatches:\n  " + "\n  ".join(wrong))
    if unused:
        problems.append("unused checkpoint keys:\n  " + "\n  ".join(unused))
    if unfilled:
        problems.append("unfilled model parameters:\n  " + "\n  ".join(sorted(set(unfilled))))
    if problems:
        raise CheckpointMismatchError(f"{path}: checkpoint does not fit the model\n"
                                      + "\n".join(problems))
    return new


# --- the entry point -------------------------------------------------------------------
def load_pretrained(checkpoint: str, *, model: Union[str, int, None] = None,
                    esize: Optional[int] = None, revision: Optional[str] = None,
                    token: Optional[str] = None, map_location: Union[str, torch.device] = "cpu",
                    **overrides: Any) -> nn.Module:
    """Build a model and fill it from `checkpoint` (file, folder or Hub id).

    model: None keeps the checkpoint's own model ("audio" for pyannote checkpoints);
    "audio"/0, 6/"late", 7/"early", 8/"hybrid" build that model and fill its audio parts.
    esize: video embedding size (fusion models). overrides: fusion hyper-parameters
    (d_model, num_layers, ...) for a new fusion model. Returns the model in eval mode.
    """
    from core.models import build_model, checkpoint_hparams, model_name

    path = resolve_checkpoint(str(checkpoint), revision=revision, token=token)
    raw = read_checkpoint(path)
    if "model_state" in raw and "model_hparams" in raw:  # avdiar's own checkpoint
        saved = checkpoint_hparams(raw["model_hparams"])
        state = raw["model_state"]
    elif "state_dict" in raw:
        state = raw["state_dict"]
        saved = pyannote_hparams(raw, path)
    else:
        raise CorruptCheckpointError(
            f"{path}: neither a pyannote checkpoint (no 'state_dict') nor an avdiar one "
            "(no 'model_state')")
    saved_name = model_name(saved.get("model", "audio"))
    target_name = saved_name if model is None else model_name(model)
    if saved_name != "audio" and target_name != saved_name:
        raise CheckpointMismatchError(
            f"{path}: holds model {saved_name!r}; it cannot be loaded as {target_name!r} "
            "(fine-tune fusion models from an audio-only checkpoint)")
    hparams = {key: saved[key] for key in BACKBONE_KEYS if key in saved}
    if target_name == saved_name:
        hparams.update({k: v for k, v in saved.items() if k not in BACKBONE_KEYS and k != "model"})
    hparams.update(overrides)
    if esize is not None:
        hparams["esize"] = esize
    if "lstm" in hparams:
        hparams["lstm"] = {k: v for k, v in hparams["lstm"].items() if k != "monolithic"}
    net = build_model(target_name, **hparams)

    table = audio_key_table(saved)
    if target_name == saved_name and saved_name != "audio":
        audio_targets = {ours for _, ours in table}
        table += [(key, key) for key in net.state_dict() if key not in audio_targets]
    new = _fill(net, state, table, path)
    if new:
        log.info("%s: %d new fusion tensors keep their initialisation", path, len(new))
    return net.to(map_location).eval()
