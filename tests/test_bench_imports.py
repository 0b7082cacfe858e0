"""Every benchmark module imports and runs as `python -m bench.NAME`, and the harness takes
turns (nothing is timed)."""

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import bench

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(info.name for info in pkgutil.iter_modules(bench.__path__))


def test_the_maintained_benchmarks_are_there():
    assert {"timing", "workloads", "vs_pyannote", "pipeline_rtf", "speed_paths", "data",
            "profile", "models", "train"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_module_imports(name):
    module = importlib.import_module(f"bench.{name}")
    assert module.__doc__, f"bench/{name}.py has no docstring"


@pytest.mark.parametrize("name", [m for m in MODULES if m not in ("timing", "workloads")])
def test_runs_as_a_module(name):
    """`python -m bench.NAME` calls main() (checked on the module, without running it)."""
    module = importlib.import_module(f"bench.{name}")
    assert callable(getattr(module, "main", None))
    assert 'if __name__ == "__main__":' in Path(module.__file__).read_text(encoding="utf-8")


def test_a_benchmark_runs_as_a_module_from_the_root():
    done = subprocess.run([sys.executable, "-m", "bench.speed_paths", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "usage" in done.stdout


def test_no_bench_script_patches_sys_path():
    for path in (ROOT / "bench").glob("*.py"):
        assert "sys.path" not in path.read_text(encoding="utf-8"), path.name


def test_in_turns_rotates_the_order_and_counts_every_run():
    from bench import timing

    order = []
    runs = {name: (lambda name=name: order.append(name)) for name in "abc"}
    timings = timing.in_turns(runs, repeats=3, warmup=1)
    assert order == list("abc" + "abc" + "bca" + "cab")
    assert all(len(t.wall_s) == len(t.cpu_s) == 3 for t in timings.values())
    table = timing.summary(timings, baseline="a")
    assert table.count("\n") == 1 + len(runs) and "| a |" in table and "1.000x" in table
    assert "threads" in timing.machine_line()
