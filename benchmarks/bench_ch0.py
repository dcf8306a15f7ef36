"""Chapter 0 benchmark: run the chapter's notebook end to end in a profile and print what it measured.

    COURSE_PROFILE=cpu python benchmarks/bench_ch0.py            # the chapter (target: ≤ 3 min, accuracy ≥ 90 %)
    COURSE_PROFILE=cpu python benchmarks/bench_ch0.py --tests    # also time the README's test command

The notebook runs in reference mode in a fresh kernel, exactly as the book build runs it; the figures are read
from the kernel afterwards, so they are the ones a reader sees.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from notebook_runner import run_notebook

ROOT = Path(__file__).resolve().parent.parent
REPORT = """
import json
print("BENCH" + json.dumps({
    "profile": PROFILE.name, "train_steps": run.steps, "train_seconds": run.seconds,
    "steps_per_second": run.steps_per_second,
    "acc_w1": final_w1.acc, "fd_w1": final_w1.fd, "acc_w2": final_w2.acc, "fd_w2": final_w2.fd,
    "sampling_seconds_w1": final_w1.seconds, "n_samples": len(final_w1.labels), "fd_floor": floor,
    "judge_test_accuracy": judge.test_accuracy,
    "samplers": {f"{s}-{k}": {"acc": e.acc, "fd": e.fd, "seconds": e.seconds, "n": len(e.labels)} for s, k, e in rows},
    "ddim_at_ddpm_n": {"acc": ddim_same.acc, "fd": ddim_same.fd, "n": len(ddim_same.labels)},
    "noise_fd": noise_fd,
    "guidance": {str(w): {"acc": e.acc, "fd": e.fd} for w, e in sweep.items()},
}))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tests", action="store_true", help="also time tools/test.sh")
    args = parser.parse_args()
    stats, wall = run_notebook(ROOT / "book" / "00_diffusion.ipynb", REPORT)
    print(f"chapter 0, profile `{stats['profile']}`, {os.cpu_count()} CPU cores")
    print(f"  whole notebook            {wall:7.1f} s")
    print(f"  training                  {stats['train_seconds']:7.1f} s  ({stats['train_steps']} steps, "
          f"{stats['steps_per_second']:.1f} steps/s)")
    print(f"  w = 1 (no guidance)       accuracy {stats['acc_w1']:6.1%}   FD {stats['fd_w1']:6.2f}   "
          f"({stats['n_samples']} samples, DDIM 20 steps, {stats['sampling_seconds_w1']:.1f} s)")
    print(f"  w = 2                     accuracy {stats['acc_w2']:6.1%}   FD {stats['fd_w2']:6.2f}")
    print(f"  real training digits      FD {stats['fd_floor']:.2f} (the floor); judge test accuracy "
          f"{stats['judge_test_accuracy']:.1%}")
    for name, s in stats["samplers"].items():
        print(f"  {name:<12}              accuracy {s['acc']:6.1%}   FD {s['fd']:6.2f}   ({s['n']} samples, "
              f"{s['seconds']:.1f} s)")
    same = stats["ddim_at_ddpm_n"]
    print(f"  ddim-20 at DDPM's n       accuracy {same['acc']:6.1%}   FD {same['fd']:6.2f}   ({same['n']} samples)")
    print(f"  pure noise                FD {stats['noise_fd']:.1f}")
    print("  guidance sweep (DDIM 20):  " + "; ".join(f"w = {float(w):g}: {g['acc']:.1%}, FD {g['fd']:.2f}"
                                                     for w, g in stats["guidance"].items()))
    if args.tests:
        start = time.perf_counter()
        proc = subprocess.run(["bash", "tools/test.sh", "-q"], cwd=ROOT, capture_output=True, text=True)
        tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-300:]
        print(f"  test suite (tools/test.sh) {time.perf_counter() - start:6.1f} s: {tail}")
        sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
