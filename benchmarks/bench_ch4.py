"""Chapter 4 benchmark: run the GenViT/HybViT notebook end to end in a profile and print what it measured.

    COURSE_PROFILE=cpu python benchmarks/bench_ch4.py     # target: the whole notebook ≤ 3 min on 2 quiet cores

The notebook runs in reference mode in a fresh kernel, exactly as the book build runs it; the figures are read
from the kernel afterwards, so they are the ones a reader sees: per run (HybViT, classifier only, GenViT, the loss
weight sweep, DiT with adaLN-Zero, GenViT with L2) the parameters and training seconds, the classifier's test
accuracy and ECE, FD of unconditional 20-step DDIM samples; DDPM (1,000 steps) against DDIM; the classifier's test
accuracy on noised inputs.
"""
from __future__ import annotations

import os
from pathlib import Path

from notebook_runner import run_notebook

ROOT = Path(__file__).resolve().parent.parent
REPORT = """
import json
print("BENCH" + json.dumps({
    "profile": PROFILE.name, "steps": STEPS, "batch": BATCH, "n_gen": N_GEN, "fd_floor": floor, "fd_noise": fd_noise,
    "runs": {name: {"params": r["params"], "train_seconds": r["res"].seconds, "curve": r["curve"]}
             for name, r in runs.items()},
    "rows": rows, "sweep": {str(k): v for k, v in sweep.items()},
    "fd_dit": fd_dit, "fd_l2": fd_l2, "ln_gap": ln_gap,
    "ddpm": {"n": N_DDPM, "noise": ddpm_noise, "fd_ddpm": fd_ddpm, "s_ddpm": sec_ddpm, "fd_ddim": fd_ddim,
             "s_ddim": sec_ddim},
    "acc_under_noise": dict(zip(map(str, LEVELS), acc_at)), "view_px": view_px, "self_agree": agree,
    "verdicts": [share_verdict, trend, adaln_verdict, loss_verdict, sampler_verdict],
}))
"""


def main() -> None:
    stats, wall = run_notebook(ROOT / "book" / "04_genvit.ipynb", REPORT)
    print(f"chapter 4, profile `{stats['profile']}`, {os.cpu_count()} CPU cores")
    print(f"  whole notebook {wall:7.1f} s   ({stats['steps']} steps per run, batch {stats['batch']}, FD from "
          f"{stats['n_gen']} samples; real digits FD {stats['fd_floor']:.2f}, sampling noise of FD "
          f"{stats['fd_noise']:.2f})")
    print(f"  training, all runs together: {sum(r['train_seconds'] for r in stats['runs'].values()):.1f} s")
    rows = stats["rows"]
    for name, r in stats["runs"].items():
        row = rows.get(name, {})
        acc = f"{row['test acc']:.1%}" if "test acc" in row else "—"
        ece = f"{row['ECE']:.3f}" if "ECE" in row else "—"
        fd = f"{row['FD']:.2f}" if "FD" in row else (f"{r['curve'][-1][1]:.2f}" if r["curve"] else "—")
        print(f"  {name:18s} {r['params']:>9,} params  train {r['train_seconds']:6.1f} s  acc {acc:>6s}  "
              f"ECE {ece:>6s}  FD {fd:>6s}")
    for name in ("GenViT", "DiT (adaLN-Zero)"):
        print(f"  FD against steps, {name}: " + ", ".join(f"{s}: {f:.2f}" for s, f in stats["runs"][name]["curve"]))
    print("  loss weight sweep (p_x; p_y|x = 1): " + "; ".join(
        f"{px}: acc {v['acc']:.1%}, ECE {v['ece']:.3f}, FD {v['fd']:.2f}" for px, v in stats["sweep"].items()))
    print(f"  GenViT L2: FD {stats['fd_l2']:.2f};  LayerNorm gap after a per-token affine {stats['ln_gap']:.1e}")
    d = stats["ddpm"]
    print(f"  {d['n']} samples: DDPM 1000 steps FD {d['fd_ddpm']:.2f} ({d['s_ddpm']:.1f} s), DDIM FD "
          f"{d['fd_ddim']:.2f} ({d['s_ddim']:.1f} s); FD sampling noise at this size {d['noise']:.2f}")
    accs = ", ".join(f"t={t}: {a:.0%}" for t, a in stats["acc_under_noise"].items())
    print(f"  classifier (HybViT p_x = {stats['view_px']}) accuracy on x_t: {accs}")
    print(f"  HybViT's classifier agrees with the judge on {stats['self_agree']:.1%} of its own samples")
    for v in stats["verdicts"]:
        print("  - " + v)


if __name__ == "__main__":
    main()
