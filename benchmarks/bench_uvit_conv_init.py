"""The U-ViT's output conv on one channel: PyTorch's default initialisation against the identity, seed by seed.

    COURSE_SOLUTIONS=1 python benchmarks/bench_uvit_conv_init.py            # seeds 0-9, 300 steps: ~8 min, 1 core
    COURSE_SOLUTIONS=1 python benchmarks/bench_uvit_conv_init.py --seeds 4 --steps 200

Trains the course's digits U-ViT (`create_uvit()`, chapter 2's recipe, the studies' seeds) once with the official
initialisation of the 3×3 output conv (`conv_init="pytorch"`) and once starting it as the identity (the course's
default), everything else drawn the same, and prints the training loss (the mean of 25 steps) at three points of
the run, and the trained kernel. A run whose loss at the end is over twice the median of the identity runs is
named as stalled.
"""
from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch


def run(seed: int, conv_init: str, steps: int) -> tuple[list[float], torch.Tensor]:
    from course.diffusion import Diffusion
    from course.lab.data import digits
    from course.lab.experiments import RECIPE, label_dropout
    from course.lab.train import train
    from course.uvit import create_uvit

    x, y = digits("train")
    torch.manual_seed(seed)
    model = create_uvit(conv_init=conv_init)
    r = train(model, x, y, diffusion=Diffusion(T=1000, schedule="cosine"), steps=steps, seed=seed, progress=False,
              **{**RECIPE, "p_uncond": label_dropout(model)})
    losses = np.asarray(r.losses)
    points = [losses[max(0, m - 25):m].mean() for m in (steps // 3, 2 * steps // 3, steps)]
    return [float(v) for v in points], model.final_layer.weight.detach().view(3, 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--steps", type=int, default=300)
    args = ap.parse_args()
    marks = (args.steps // 3, 2 * args.steps // 3, args.steps)
    results = {(s, c): run(s, c, args.steps) for s in range(args.seeds) for c in ("pytorch", "identity")}
    median = statistics.median(results[s, "identity"][0][-1] for s in range(args.seeds))
    print(f"training loss (mean of 25 steps) at steps {marks}; stalled = over 2 × the identity runs' median "
          f"({median:.3f}) at the end")
    print(f"{'seed':>4}  {'PyTorch default':<26}{'identity':<26}")
    stalled = {c: [] for c in ("pytorch", "identity")}
    for s in range(args.seeds):
        cells = []
        for c in ("pytorch", "identity"):
            points, _ = results[s, c]
            if points[-1] > 2 * median:
                stalled[c].append(s)
            cells.append(" ".join(f"{v:.3f}" for v in points) + (" stalled" if points[-1] > 2 * median else ""))
        print(f"{s:>4}  {cells[0]:<26}{cells[1]:<26}")
    for c, seeds in stalled.items():
        print(f"{c}: {len(seeds)} of {args.seeds} seeds stalled {seeds}")
        for s in seeds:
            print(f"  seed {s}'s trained kernel:\n{results[s, c][1].numpy().round(2)}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
