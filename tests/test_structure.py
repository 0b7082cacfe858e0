"""The layering of the folders (DESIGN.md) and one home per shared constant, read from the
source: run.py and demo.py > train/, eval/ > data/ > core/; train/ and eval/ never import
each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = ("core", "data", "train", "eval", "run", "demo")
# what each folder must not import
FORBIDDEN = {"core": {"data", "train", "eval", "run", "demo"},
             "data": {"train", "eval", "run", "demo"},
             "train": {"eval", "run", "demo"},
             "eval": {"train", "run", "demo"}}


def imported_packages(path: Path) -> set:
    """Our top-level packages that the module at `path` imports (anywhere in it)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {name.split(".")[0] for name in names} & set(OURS)
    return found


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_each_folder_imports_only_downward(folder):
    wrong = {str(path.relative_to(ROOT)): sorted(imported_packages(path) & FORBIDDEN[folder])
             for path in sorted((ROOT / folder).glob("*.py"))}
    assert {name: bad for name, bad in wrong.items() if bad} == {}


def test_the_sample_rate_has_one_home():
    homes = [str(path.relative_to(ROOT)) for folder in FORBIDDEN
             for path in sorted((ROOT / folder).glob("*.py"))
             if any(isinstance(node, ast.Assign)
                    and any(getattr(t, "id", None) == "SAMPLE_RATE" for t in node.targets)
                    for node in ast.parse(path.read_text(encoding="utf-8")).body)]
    assert homes == ["core/constants.py"]
