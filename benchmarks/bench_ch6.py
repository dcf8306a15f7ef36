"""Chapter 6 benchmark: run the latent-diffusion notebook end to end in a profile and print what it measured.

    COURSE_PROFILE=cpu python benchmarks/bench_ch6.py     # target: the whole notebook ≤ 3 min on 2 quiet cores,
                                                          # with the autoencoders and the shapes judge cached

Run it twice to see both costs: the first run trains (and caches) the judge and the autoencoders of the KL sweep.
"""
from __future__ import annotations

import os
from pathlib import Path

from notebook_runner import run_notebook

ROOT = Path(__file__).resolve().parent.parent
REPORT = """
import json
print("BENCH" + json.dumps({
    "profile": PROFILE.name, "steps": STEPS, "batch": BATCH, "fd_floor": floor, "judge_acc": judge.test_accuracy,
    "ae": {"params": n_params, "seconds": history["seconds"], "rec_mse": rec_mse, "rec_acc": rec_acc, "rec_fd": rec_fd,
           "z_std": float(z_train.std()), "scale": scale, "decoder_mflop": decoder_mflop},
    "variants": {n: {k: r[k] for k in ("tokens", "params", "mflop", "steps/s", "train s", "sample s", "fd", "acc")}
                 for n, r in {**results, "latents, unscaled": unscaled}.items()},
    "kl_sweep": {str(w): v for w, v in sweep.items()},
}))
"""


def main() -> None:
    stats, wall = run_notebook(ROOT / "book" / "06_latent.ipynb", REPORT)
    print(f"chapter 6, profile `{stats['profile']}`, {os.cpu_count()} CPU cores: whole notebook {wall:.1f} s")
    ae = stats["ae"]
    print(f"  judge test accuracy {stats['judge_acc']:.1%}; FD floor (real images) {stats['fd_floor']:.2f}")
    print(f"  autoencoder: {ae['params']:,d} parameters, trained in {ae['seconds']:.0f} s (0 if cached now); test "
          f"MSE {ae['rec_mse']:.4f}, judge accuracy on reconstructions {ae['rec_acc']:.1%}, FD {ae['rec_fd']:.2f}")
    print(f"  latents: std {ae['z_std']:.3f}, scale {ae['scale']:.4f}; decoder {ae['decoder_mflop']:.1f} MFLOP/image")
    print(f"  {stats['steps']} steps, batch {stats['batch']} each:")
    print(f"  {'model':20s} {'tokens':>6s} {'params':>8s} {'MFLOP':>7s} {'steps/s':>8s} {'train s':>8s} "
          f"{'FD':>7s} {'acc':>6s}")
    for name, v in stats["variants"].items():
        print(f"  {name:20s} {v['tokens']:6d} {v['params'] / 1e6:7.2f}M {v['mflop']:7.1f} {v['steps/s']:8.1f} "
              f"{v['train s']:8.1f} {v['fd']:7.2f} {v['acc']:6.1%}")
    for w, v in stats["kl_sweep"].items():
        print(f"  KL weight {w:>6s}: MSE {v['mse']:.4f}, KL/image {v['kl']:.1f}, latent std {v['std']:.3f}, "
              f"mean σ {v['sigma']:.3f}")


if __name__ == "__main__":
    main()
