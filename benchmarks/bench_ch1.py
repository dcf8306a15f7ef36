"""Chapter 1 benchmark: run the U-Net vs ViT notebook end to end in a profile and print what it measured.

    COURSE_PROFILE=cpu python benchmarks/bench_ch1.py     # target: the chapter's training ≤ 3 min on 2 cores

The notebook runs in reference mode in a fresh kernel, exactly as the book build runs it; the figures are read
from the kernel afterwards, so they are the ones a reader sees: for both backbones the parameters, the forward
GFLOP per 8×8 image (course.lab.flops, i.e. torch.utils.flop_counter: 2 FLOPs per multiply-add), the training seconds
under the same budget, FD and class accuracy of unguided (w = 1) 20-step DDIM samples, and the held-out loss
(course.lab.metrics.heldout_loss) of three seeds of each model early in training.
"""
from __future__ import annotations

import os
from pathlib import Path

from notebook_runner import run_notebook

ROOT = Path(__file__).resolve().parent.parent
REPORT = """
import json
from course.lab.flops import gflops
print("BENCH" + json.dumps({
    "profile": PROFILE.name, "fd_floor": floor, "budget": {"steps": steps, **budget},
    "seeds": {"steps": SEED_STEPS, "heldout": early}, "heldout": heldout,
    "models": {name: {"params": n_params(runs[name].model), "gflops": gflops(runs[name].model, (1, 1, 8, 8)),
                      "train_seconds": runs[name].seconds, "steps": runs[name].steps,
                      "steps_per_second": runs[name].steps_per_second,
                      "final_loss": sum(runs[name].losses[-100:]) / len(runs[name].losses[-100:]),
                      "fd": evals[name].fd, "acc": evals[name].acc, "n_samples": len(evals[name].labels),
                      "sampling_seconds": evals[name].seconds,
                      "receptive_field": {str(t): spread(maps[name][t]) for t in ts_rf}}
               for name in runs},
    "cost_by_size": {str(s): {name: cost[name][i] for name in cost} for i, s in enumerate(sizes)},
    "vit_mean_attention_distance": mean_dist.tolist(),
    "unet_attention_share": dict(zip(map(str, sizes), unet_attn_share)),
    "vit_attention_share": dict(zip(map(str, sizes), attn_share)),
}))
"""


def main() -> None:
    stats, wall = run_notebook(ROOT / "book" / "01_unet_vit.ipynb", REPORT)
    models = stats["models"]
    budget = stats["budget"]
    print(f"chapter 1, profile `{stats['profile']}`, {os.cpu_count()} CPU cores")
    print(f"  whole notebook   {wall:7.1f} s")
    print(f"  training of both {sum(m['train_seconds'] for m in models.values()):7.1f} s  (each: {budget['steps']} "
          f"steps, batch {budget['batch_size']}, lr {budget['lr']:g})")
    print(f"  {'':7s} {'params':>9s} {'GFLOP/img':>10s} {'train s':>8s} {'steps/s':>8s} {'loss':>7s} "
          f"{'FD (w=1)':>9s} {'acc (w=1)':>10s} {'sampling s':>11s}")
    for name, m in models.items():
        print(f"  {name:7s} {m['params']:>9,} {m['gflops']:>10.4f} {m['train_seconds']:>8.1f} "
              f"{m['steps_per_second']:>8.2f} {m['final_loss']:>7.4f} {m['fd']:>9.2f} {m['acc']:>10.1%} "
              f"{m['sampling_seconds']:>11.1f}")
    seeds = stats["seeds"]
    print("  held-out loss of the seed-0 models: " + ", ".join(f"{k} {v:.4f}" for k, v in stats["heldout"].items()))
    print(f"  held-out loss after {seeds['steps']} steps, per seed: "
          + "; ".join(f"{k} " + ", ".join(f"{v:.4f}" for v in vals) for k, vals in seeds["heldout"].items()))
    n = next(iter(models.values()))["n_samples"]
    print(f"  ({n} samples per model, 20 DDIM steps; real training digits score FD {stats['fd_floor']:.2f})")
    print("  receptive field of pixel (3, 4) after training (share of |gradient| on the pixel itself; of the rest, "
          "share from 3 px or more away):")
    for name, m in models.items():
        print("    " + f"{name:6s} " + "   ".join(f"t = {t}: {own:.0%}, {far:.0%}" for t, (own, far) in
                                              m["receptive_field"].items()))
    print("  forward GFLOP per image as the image grows (params do not change):")
    for size, row in stats["cost_by_size"].items():
        print(f"    {size:>3}×{size:<3} " + "   ".join(f"{name} {gf:.3f}" for name, (_, gf) in row.items())
              + f"   (attention: ViT {stats['vit_attention_share'][size]:.0%}, "
              f"U-Net {stats['unet_attention_share'][size]:.1%})")
    dist = stats["vit_mean_attention_distance"]
    print("  ViT mean attention distance per block (px, mean over heads): "
          + ", ".join(f"{sum(b) / len(b):.2f}" for b in dist))


if __name__ == "__main__":
    main()
