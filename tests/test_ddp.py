"""The training loop under torchrun: 2 CPU processes (gloo) train as 1 process does with the same global batch,
resume from process 0's checkpoint, show one progress bar and keep the same EMA."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tools" / "train_ddp.py"
TINY = ["--model", "unet", "--channels", "8", "16", "--emb-dim", "16", "--batch-size", "16", "--lr", "3e-3"]

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed with gloo is not available in this build")


def torchrun(tmp_path: Path, *args: str, procs: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "COURSE_DEVICE": "cpu", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}",
           str(SCRIPT), *TINY, *args]
    done = subprocess.run(cmd, check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"torchrun failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def one_process(*args: str) -> None:
    spec = importlib.util.spec_from_file_location("train_ddp", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main([*TINY, *args]) == 0


def read(folder: Path, rank: int) -> dict:
    return json.loads((folder / f"rank{rank}.json").read_text())


def test_two_processes_train_resume_and_match_one(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    ckpt = tmp_path / "run.pt"
    torchrun(tmp_path, "--steps", "6", "--checkpoint", str(ckpt), "--out", str(tmp_path / "first"), "--no-progress")
    assert ckpt.exists() and torch.load(ckpt, weights_only=False)["step"] == 6
    assert not list(tmp_path.glob("*.tmp"))
    resumed = torchrun(tmp_path, "--steps", "12", "--checkpoint", str(ckpt), "--out", str(tmp_path / "second"))
    one_process("--steps", "12", "--out", str(tmp_path / "single"), "--no-progress")

    two, other, single = read(tmp_path / "second", 0), read(tmp_path / "second", 1), read(tmp_path / "single", 0)
    assert two["steps"] == 12 and len(two["losses"]) == 12
    # The same global batches, the gradients averaged over the processes: the same run, to rounding.
    assert torch.allclose(torch.tensor(two["losses"]), torch.tensor(single["losses"]), rtol=1e-4, atol=1e-6), (
        two["losses"], single["losses"])
    # The EMA stays in step on every process.
    assert (two["ema_sum"], two["ema_sq"]) == (other["ema_sum"], other["ema_sq"])
    assert two["ema_sum"] == pytest.approx(single["ema_sum"], rel=1e-4)
    # One progress bar: it starts at the resumed step 6 of 12 once, not once per process.
    assert resumed.stderr.count(" 6/12 ") == 1, resumed.stderr[-2000:]
