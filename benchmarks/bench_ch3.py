"""Chapter 3 benchmark: run the U-ViT notebook end to end in a profile and print what it measured.

    COURSE_PROFILE=cpu python benchmarks/bench_ch3.py     # target: the whole notebook ≤ 3 min on 2 quiet cores

The notebook runs in reference mode in a fresh kernel, exactly as the book build runs it; the figures are read from
the kernel afterwards, so they are the ones a reader sees: the notebook's wall time, and for every variant of the
ablations (long skips, output conv, conditioning, patch size) and the other backbones, the parameters, the forward
MFLOP per 8×8 digit (torch.utils.flop_counter: 2 FLOPs per multiply-add), the training seconds, and the FD and class
accuracy of unguided (w = 1) DDIM samples at the end of the budget, per seed, with mean and spread.
"""
from __future__ import annotations

import os
import statistics
from pathlib import Path

from notebook_runner import run_notebook

ROOT = Path(__file__).resolve().parent.parent
REPORT = """
import json
print("BENCH" + json.dumps({
    "profile": PROFILE.name, "fd_floor": floor, "milestones": MILESTONES, "batch": BATCH, "lr": LR,
    "samples_per_milestone": 10 * N_CURVE, "sample_steps": SAMPLE_STEPS,
    "guided": {"w": 2.0, "fd": guided.fd, "acc": guided.acc},
    "runs": [{"name": n, "seed": s, "params": v["params"], "mflops": v["mflops"], "seconds": v["seconds"],
              "fd": v["fd"], "acc": v["acc"], "curve": v["curve"]} for (n, s), v in runs.items()],
    "time_token_attention": {"low_noise": low, "high_noise": high, "uniform": uniform},
}))
"""


def sd(values: list[float]) -> float:
    return statistics.pstdev(values) if len(values) > 1 else 0.0


def main() -> None:
    stats, wall = run_notebook(ROOT / "book" / "03_uvit.ipynb", REPORT)
    by_name: dict[str, list[dict]] = {}
    for r in stats["runs"]:
        by_name.setdefault(r["name"], []).append(r)
    print(f"chapter 3, profile `{stats['profile']}`, {os.cpu_count()} CPU cores")
    print(f"  whole notebook {wall:7.1f} s; training of all runs {sum(r['seconds'] for r in stats['runs']):.1f} s")
    print(f"  budget per run: {stats['milestones'][-1]} steps, batch {stats['batch']}, lr {stats['lr']:g}; measured "
          f"at steps {stats['milestones']} with {stats['samples_per_milestone']} samples, "
          f"{stats['sample_steps']} DDIM steps, w = 1")
    print(f"  {'variant':26s} {'seeds':>5s} {'params':>9s} {'MFLOP':>6s} {'train s':>8s} {'FD mean':>8s} "
          f"{'FD sd':>6s} {'FD per seed':>22s} {'acc mean':>9s} {'acc sd':>7s}")
    for name, rs in by_name.items():
        fds, accs = [r["fd"] for r in rs], [r["acc"] for r in rs]
        print(f"  {name:26s} {len(rs):5d} {rs[0]['params']:9,} {rs[0]['mflops']:6.1f} "
              f"{statistics.mean(r['seconds'] for r in rs):8.1f} {statistics.mean(fds):8.2f} {sd(fds):6.2f} "
              f"{' '.join(f'{v:.2f}' for v in fds):>22s} {statistics.mean(accs):9.1%} {sd(accs):7.1%}")
    g = stats["guided"]
    print(f"  U-ViT seed 0 with guidance w = {g['w']:g}: FD {g['fd']:.2f}, accuracy {g['acc']:.1%}; real training "
          f"digits: FD {stats['fd_floor']:.2f}")
    a = stats["time_token_attention"]
    print(f"  attention of patch tokens to the time token: {a['low_noise']:.3f} (cleaner half of t), "
          f"{a['high_noise']:.3f} (noisier half); uniform {a['uniform']:.3f}")


if __name__ == "__main__":
    main()
