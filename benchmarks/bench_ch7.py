"""Chapter 7 benchmark: run the head-to-head notebook end to end in a profile and print what it measured.

    COURSE_PROFILE=cpu python benchmarks/bench_ch7.py     # target: the whole notebook ≤ 5 min on 2 quiet cores
"""
from __future__ import annotations

import os
from pathlib import Path

from notebook_runner import run_notebook

ROOT = Path(__file__).resolve().parent.parent
REPORT = """
import json
print("BENCH" + json.dumps({
    "profile": PROFILE.name, "steps": STEPS, "seeds": SEEDS, "fd_floor": floor,
    "table": {n: {k: v for k, v in t.items()} for n, t in table.items()},
    "curves": {n: {"seconds": list(map(float, s)), "fd": list(map(float, f))} for n, (s, f) in curves.items()},
    "speed": speed, "steps_verdict": steps_verdict, "time_verdict": time_verdict,
}))
"""


def main() -> None:
    stats, wall = run_notebook(ROOT / "book" / "07_summary.ipynb", REPORT)
    print(f"chapter 7, profile `{stats['profile']}`, {os.cpu_count()} CPU cores: whole notebook {wall:.1f} s")
    print(f"  {stats['steps']} steps, seeds {stats['seeds']}; FD floor {stats['fd_floor']:.2f}")
    print(f"  {'backbone':8s} {'params':>8s} {'MFLOP':>6s} {'steps/s':>8s} {'FD':>7s} {'sd':>6s} {'acc':>6s} "
          f"{'sd':>5s}")
    for name, t in sorted(stats["table"].items(), key=lambda kv: kv[1]["fd"]):
        print(f"  {name:8s} {t['params'] / 1e6:7.2f}M {t['mflop']:6.1f} {t['steps/s']:8.1f} {t['fd']:7.2f} "
              f"{t['fd_sd']:6.2f} {t['acc']:6.1%} {t['acc_sd']:5.1%}")
    for name, c in stats["curves"].items():
        points = ", ".join(f"{s:.0f} s: {f:.2f}" for s, f in zip(c["seconds"], c["fd"]))
        print(f"  FD against seconds, {name}: {points}")
    for name, s in stats["speed"].items():
        print(f"  DiT-Ti/2 on the CPU, {name}: {s:.2f} steps/s")
    print("  " + stats["steps_verdict"])
    print("  " + stats["time_verdict"])


if __name__ == "__main__":
    main()
