"""Chapter 5 benchmark: run the DiffiT notebook end to end in a profile and print what it measured.

    COURSE_PROFILE=cpu python benchmarks/bench_ch5.py     # target: the whole notebook ≤ 3 min on 2 quiet cores

The notebook runs in reference mode in a fresh kernel, exactly as the book build runs it; the figures are read
from the kernel afterwards, so they are the ones a reader sees: the notebook's wall time, and for every variant of
the two ablations (where time enters; window size) the FD and class accuracy of unguided DDIM samples at each
milestone, mean and spread over seeds, with parameters, FLOPs (torch.utils.flop_counter, 2 per multiply-add) and
training speed; the mean attention distance against t; how much one query's attention moves between t = 999 and 0.
"""
from __future__ import annotations

import os
from pathlib import Path

from notebook_runner import run_notebook

ROOT = Path(__file__).resolve().parent.parent
REPORT = """
import json
print("BENCH" + json.dumps({
    "profile": PROFILE.name, "fd_floor": fd_floor(8), "milestones": MILESTONES, "batch": BATCH,
    "seeds": SEEDS, "seeds_window": SEEDS_W, "n_per_class": N_CURVE, "sample_steps": SAMPLE_STEPS,
    "main": {"fd": plain.fd, "acc": plain.acc, "fd_guided": guided.fd, "acc_guided": guided.acc,
             "n_samples": len(plain.labels), "train_seconds": main["seconds"]},
    "runs": {f"{e}|{'global' if w is None else w}|{s}": {
                 "curve": r["curve"], "seconds": r["seconds"], "steps_per_second": r["run"].steps_per_second,
                 "params": sum(p.numel() for p in r["model"].parameters())}
             for (e, w, s), r in runs.items()},
    "windows": {("global" if w is None else str(w)): {k: v for k, v in row.items() if k != "windows"}
                for w, row in window_rows.items()},
    "attention_distance": {label: {"uniform": d["uniform"], "by_t": dict(zip(map(str, T_LIST), d["by_t"]))}
                           for label, d in distance.items()},
    "view_change": {"tmsa": change_tmsa, "plain": change_plain},
}, default=float))
"""


def main() -> None:
    stats, wall = run_notebook(ROOT / "book" / "05_diffit.ipynb", REPORT)
    print(f"chapter 5, profile `{stats['profile']}`, {os.cpu_count()} CPU cores, torch threads as the kernel chose")
    print(f"  whole notebook {wall:7.1f} s;  training in all {sum(r['seconds'] for r in stats['runs'].values()):.1f} s"
          f" over {len(stats['runs'])} runs of {stats['milestones'][-1]} steps (batch {stats['batch']})")
    m = stats["main"]
    print(f"  main DiffiT-T (tmsa, w = 4, seed 0): FD {m['fd']:.2f}, acc {m['acc']:.1%} (w = 1); FD "
          f"{m['fd_guided']:.2f}, acc {m['acc_guided']:.1%} (w = 2); {m['n_samples']} samples; floor "
          f"{stats['fd_floor']:.2f}")
    n = stats["n_per_class"] * 10
    print(f"  per run: FD / accuracy of {n} unguided samples ({stats['sample_steps']} DDIM steps) at milestones "
          f"{stats['milestones']}")
    groups: dict[tuple[str, str], list] = {}
    for key, r in stats["runs"].items():
        entry, window, _ = key.split("|")
        groups.setdefault((entry, window), []).append(r)
    print(f"  {'time enters':11s} {'window':>6s} {'seeds':>5s} {'params':>8s} {'steps/s':>8s}   "
          + "   ".join(f"{'FD@' + str(s):>15s}" for s in stats["milestones"]) + f"   {'acc':>6s}")
    for (entry, window), rs in groups.items():
        k = len(rs)
        cells = []
        for i in range(len(stats["milestones"])):
            fds = [r["curve"][i]["fd"] for r in rs]
            mean = sum(fds) / k
            sd = (sum((f - mean) ** 2 for f in fds) / (k - 1)) ** 0.5 if k > 1 else 0.0
            cells.append(f"{mean:7.2f} ± {sd:5.2f}")
        acc = sum(r["curve"][-1]["acc"] for r in rs) / k
        sps = sum(r["steps_per_second"] for r in rs) / k
        print(f"  {entry:11s} {window:>6s} {k:5d} {rs[0]['params']:8,} {sps:8.1f}   " + "   ".join(cells)
              + f"   {acc:6.1%}")
    print("  window ablation (TMSA): MFLOP per image, attention kFLOP per image, bias-table entries")
    for w, row in stats["windows"].items():
        print(f"    {w:>6s}: {row['mflops']:.2f} MFLOP, attention {row['attn_kflops']:.0f} kFLOP, table "
              f"{row['table']:,}, FD {row['fd']:.2f} ± {row['sd']:.2f}, acc {row['acc']:.1%}")
    print("  mean attention distance at the first level, as a fraction of uniform attention in the same window:")
    for label, d in stats["attention_distance"].items():
        print(f"    {label:14s} " + "  ".join(f"t={t}: {v / d['uniform']:.2f}" for t, v in d["by_t"].items()))
    v = stats["view_change"]
    print(f"  one query's attention, t = 999 vs 0 (total variation): TMSA {v['tmsa']:.3f}, plain MSA {v['plain']:.3f}")


if __name__ == "__main__":
    main()
