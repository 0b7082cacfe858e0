"""Model parts: freezing by part, optimizer parameter groups, and a parameter summary.

Every parameter belongs to one part, named by the first component of its name:
`sincnet`, `lstm`, `linear`, `classifier` (the pretrained audio path, pyannote's checkpoint
keys) or `fusion` (everything else: co-attention, model 8's projections).

Model 8's LSTM takes audio and video in one first-layer weight, so its video columns belong
to part `lstm`: freezing `lstm` freezes them too.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Union

from torch import nn

AUDIO_PARTS = ("sincnet", "lstm", "linear", "classifier")
PARTS = AUDIO_PARTS + ("fusion",)


def part_of(name: str) -> str:
    """Part of the parameter called `name` (as in model.named_parameters())."""
    head = name.split(".", 1)[0]
    return head if head in AUDIO_PARTS else "fusion"


def check_parts(names: Union[str, Iterable[str]]) -> List[str]:
    """Validate part names ("lstm", "lstm,linear" or a list); returns them as a list."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    names = list(names)
    unknown = [n for n in names if n not in PARTS]
    if unknown:
        raise ValueError(f"core/parts.py: unknown part(s) {unknown}; parts are {list(PARTS)}")
    return names


def parts(model: nn.Module) -> Dict[str, List[str]]:
    """Parameter names of `model` grouped by part (every part listed, maybe empty)."""
    grouped: Dict[str, List[str]] = {part: [] for part in PARTS}
    for name, _ in model.named_parameters():
        grouped[part_of(name)].append(name)
    return grouped


def freeze(model: nn.Module, names: Union[str, Iterable[str]], frozen: bool = True) -> List[str]:
    """Set requires_grad = not frozen on every parameter of the given parts.

    Returns the names of the parameters changed. Build the optimizer afterwards (or from
    param_groups) so that frozen parameters stay out of it.
    """
    wanted = set(check_parts(names))
    changed = []
    for name, param in model.named_parameters():
        if part_of(name) in wanted:
            param.requires_grad_(not frozen)
            changed.append(name)
    return changed


def param_groups(model: nn.Module, lr: float, fusion_lr: Optional[float] = None,
                 weight_decay: float = 0.0) -> List[dict]:
    """Optimizer parameter groups: "pretrained" (audio parts) at `lr` and "fusion" at
    `fusion_lr` (default `lr`). Frozen parameters and empty groups are left out."""
    pretrained, fusion = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (fusion if part_of(name) == "fusion" else pretrained).append(param)
    groups = [
        {"name": "pretrained", "params": pretrained, "lr": lr, "weight_decay": weight_decay},
        {"name": "fusion", "params": fusion, "lr": lr if fusion_lr is None else fusion_lr,
         "weight_decay": weight_decay},
    ]
    return [group for group in groups if group["params"]]


def parameter_counts(model: nn.Module) -> Dict[str, Dict[str, int]]:
    """{part: {"trainable": n, "frozen": n}} in numbers of scalars, every part listed."""
    counts = {part: {"trainable": 0, "frozen": 0} for part in PARTS}
    for name, param in model.named_parameters():
        key = "trainable" if param.requires_grad else "frozen"
        counts[part_of(name)][key] += param.numel()
    return counts


def summary(model: nn.Module) -> str:
    """A small table of parameter counts per part, trainable and frozen, for the log."""
    counts = parameter_counts(model)
    lines = [f"{'part':<11}{'trainable':>12}{'frozen':>12}"]
    total_t = total_f = 0
    for part, c in counts.items():
        if c["trainable"] or c["frozen"]:
            lines.append(f"{part:<11}{c['trainable']:>12,}{c['frozen']:>12,}")
            total_t, total_f = total_t + c["trainable"], total_f + c["frozen"]
    lines.append(f"{'total':<11}{total_t:>12,}{total_f:>12,}")
    return "\n".join(lines)
