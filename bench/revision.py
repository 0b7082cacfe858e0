"""Load one module as an earlier commit had it, to time it against this checkout in one
process (its own imports resolve in this checkout)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def load_revision(revision: str, path: str, folder: Path) -> ModuleType:
    """The module at `path` (relative to the repository, e.g. "core/sincnet.py") as commit
    `revision` had it, written to `folder` and imported under a name of its own."""
    source = subprocess.run(["git", "show", f"{revision}:{path}"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    file = folder / (Path(path).stem + "_at_revision.py")
    file.write_text(source, encoding="utf-8")
    return load_file(file)


def load_file(file: Path) -> ModuleType:
    """The module in `file`, imported under its file name (for a copy of an earlier version
    where there is no git history, e.g. on a GPU machine that gets the working tree only)."""
    name = Path(file).stem
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
