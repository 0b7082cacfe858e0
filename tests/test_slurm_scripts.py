"""sbatch scripts: syntax, the commands they launch (stub srun/scontrol/torchrun/python),
and the preemption path (USR1/TERM -> stop file -> training exits -> scontrol requeue)."""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SLURM = ROOT / "slurm"
SCRIPTS = ["model6_late.sbatch", "model7_early.sbatch", "model8_hybrid.sbatch",
           "multigpu.sbatch", "multinode.sbatch"]

STUB_LAUNCHER = """#!/bin/bash
echo "$(basename "$0") $*" >> "$STUB_LOG"
if [ "$(basename "$0")" = srun ]; then
    while [ $# -gt 0 ] && [ "${1#-}" != "$1" ]; do shift; done  # srun's own options
    exec "$@"
fi
if [ "${STUB_MODE:-exit}" = wait-stop ]; then  # act as training: wait for the stop file
    for _ in $(seq 200); do
        if [ -e "$AVDIAR_STOP_FILE" ]; then
            rm -f "$AVDIAR_STOP_FILE"; echo "checkpoint saved" >> "$STUB_LOG"; exit 0
        fi
        sleep 0.1
    done
    exit 3
fi
exit 0
"""

STUB_SCONTROL = """#!/bin/bash
echo "scontrol $*" >> "$STUB_LOG"
if [ "$1 $2" = "show hostnames" ]; then printf 'gpu-node-07\\ngpu-node-08\\n'; fi
"""


@pytest.fixture
def stubs(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("srun", STUB_LAUNCHER), ("torchrun", STUB_LAUNCHER),
                       ("python", STUB_LAUNCHER), ("scontrol", STUB_SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path),
           "STUB_LOG": str(tmp_path / "calls.log"), "REPO": str(ROOT),
           "PYTHON": str(bin_dir / "python"), "TORCHRUN": "torchrun",
           "CDIR": str(tmp_path / "exp"), "SLURM_JOB_ID": "4242", "SLURM_NNODES": "2",
           "SLURM_JOB_NODELIST": "gpu-node-[07-08]", "SLURM_CPUS_PER_TASK": "16",
           "SLURM_GPUS_ON_NODE": "4", "SLURM_SUBMIT_DIR": str(ROOT)}
    return env


def calls(env):
    path = Path(env["STUB_LOG"])
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.parametrize("script", SCRIPTS + ["preempt.sh"])
def test_bash_syntax(script):
    subprocess.run(["bash", "-n", str(SLURM / script)], check=True)


@pytest.mark.parametrize("script", SCRIPTS)
def test_headers(script):
    text = (SLURM / script).read_text()
    for line in ("#SBATCH --requeue", "#SBATCH --signal=B:USR1@120", "#SBATCH --time=06:00:00"):
        assert line in text
    if script.startswith("model"):
        assert "#SBATCH --gres=gpu:1" in text and "#SBATCH --cpus-per-task=16" in text
        assert "CONTAINER=" in text


@pytest.mark.parametrize("script,model,extra", [
    ("model6_late.sbatch", "6", "--freeze-lstm"), ("model7_early.sbatch", "7", None),
    ("model8_hybrid.sbatch", "8", None)])
def test_single_gpu_scripts_train_then_evaluate(stubs, script, model, extra):
    done = subprocess.run(["bash", str(SLURM / script)], env=stubs, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    srun, python = calls(stubs)
    assert srun.startswith("srun --ntasks=1 ")
    args = python.split()
    assert args[:2] == ["python", "run.py"]
    flags = " ".join(args[2:])
    assert f"--model {model} --finetune --esize 384" in flags and "--epochs 50" in flags
    assert "--groundtruths test" in flags
    assert f"--cdir {stubs['CDIR']}" in flags
    assert ("--freeze-lstm" in flags) == (extra == "--freeze-lstm")
    assert not any(c.startswith("scontrol requeue") for c in calls(stubs))


def test_multinode_launches_one_torchrun_per_node_with_c10d(stubs):
    done = subprocess.run(["bash", str(SLURM / "multinode.sbatch")], env=stubs,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    log = calls(stubs)
    assert log[0] == "scontrol show hostnames gpu-node-[07-08]"
    srun = next(c for c in log if c.startswith("srun "))
    assert "--nodes=2 --ntasks-per-node=1" in srun
    torchrun = next(c for c in log if c.startswith("torchrun "))
    for part in ("--nnodes 2", "--nproc_per_node 4", "--rdzv_backend c10d",
                 "--rdzv_endpoint gpu-node-07:29500", "--rdzv_id 4242", "run.py train",
                 "--model 8"):
        assert part in torchrun, (part, torchrun)


def test_multigpu_uses_a_standalone_torchrun(stubs):
    done = subprocess.run(["bash", str(SLURM / "multigpu.sbatch")], env=stubs,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    torchrun = next(c for c in calls(stubs) if c.startswith("torchrun "))
    assert "--standalone --nnodes 1 --nproc_per_node 4 run.py train" in torchrun


@pytest.mark.parametrize("script,sig", [("model7_early.sbatch", signal.SIGUSR1),
                                        ("multigpu.sbatch", signal.SIGTERM)])
def test_signal_to_batch_shell_checkpoints_then_requeues(stubs, script, sig):
    env = {**stubs, "STUB_MODE": "wait-stop"}
    proc = subprocess.Popen(["bash", str(SLURM / script)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 30
        while time.time() < deadline and not any(
                c.startswith(("python", "torchrun")) for c in calls(env)):
            time.sleep(0.1)
        time.sleep(0.3)
        proc.send_signal(sig)
        out = proc.communicate(timeout=30)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    log = calls(env)
    assert "checkpoint saved" in log, (log, out)
    assert log[-1] == "scontrol requeue 4242", (log, out)
    assert "requeueing job 4242" in out
