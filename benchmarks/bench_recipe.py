"""The recipe sweep behind the chapters' headline runs: one class-conditional model, several training recipes,
each measured by the class accuracy (the judge) and FD of its samples without (w = 1) and with (w = 2) guidance.

    python benchmarks/bench_recipe.py                         # DiT-Ti/2, the sweep of the note
    python benchmarks/bench_recipe.py --model uvit --only minsnr-b64
    python benchmarks/bench_recipe.py --model dit --seeds 0 1 --only minsnr-b64

Prints one row per recipe and seed: steps, training seconds (and steps/s), then accuracy / FD of the EMA model (and
of the raw weights) at w = 1 and w = 2, with the FD floor at the same number of samples. Reference mode
(`COURSE_SOLUTIONS=1` is set here). Timings are wall clock on this machine: run it with nothing else busy.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("COURSE_SOLUTIONS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from course.lab.data import digits  # noqa: E402
from course.lab.experiments import RECIPE, label_dropout  # noqa: E402
from course.lab.studies import BUILDS  # noqa: E402
from course.lab.metrics import evaluate, fd_floor  # noqa: E402
from course.lab.train import train  # noqa: E402

# name: (overrides of train()'s arguments, steps)
RECIPES = {
    "chapter-2-before": (dict(lr=3e-3, batch_size=128, warmup=0, min_snr_gamma=None), 320),
    "b128-700": (dict(lr=3e-3, batch_size=128, warmup=0, min_snr_gamma=None), 700),
    "b128-warmup-700": (dict(lr=3e-3, batch_size=128, warmup=50, min_snr_gamma=None), 700),
    "b64-1150": (dict(lr=3e-3, batch_size=64, warmup=50, min_snr_gamma=None), 1150),
    "minsnr-b64": ({}, 1150),  # the course's RECIPE
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="dit", choices=["dit", "uvit", "diffit"],
                        help="the chapters' models: DiT-Ti/2, the course U-ViT, DiffiT-T")
    parser.add_argument("--only", nargs="*", default=None, help="recipes to run (default: all)")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0])
    parser.add_argument("--steps", type=int, default=None, help="override every recipe's steps")
    parser.add_argument("--per-class", type=int, default=40, help="samples per class (400 by default)")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    x, y = digits("train")
    from course.diffusion import Diffusion

    diffusion = Diffusion(T=1000, schedule="cosine")
    floor = fd_floor(8, n=10 * args.per_class)
    print(f"model {args.model}; FD floor at {10 * args.per_class} samples: {floor:.2f}")
    print("| recipe | seed | steps | train s (steps/s) | EMA w=1 acc / FD | EMA w=2 acc / FD | raw w=1 acc / FD |")
    print("|---|---|---|---|---|---|---|")
    for name, (overrides, steps) in RECIPES.items():
        if args.only and name not in args.only:
            continue
        for seed in args.seeds:
            torch.manual_seed(seed)
            model = BUILDS[args.model]()  # course.lab.studies' builders, with their defaults
            recipe = {**RECIPE, **overrides}
            start = time.perf_counter()
            run = train(model, x, y, diffusion=diffusion, steps=args.steps or steps, seed=seed,
                        p_uncond=label_dropout(model), progress=False, **recipe)
            wall = time.perf_counter() - start
            cells = []
            for net, w in ((run.ema, 1.0), (run.ema, 2.0), (run.model.eval(), 1.0)):
                e = evaluate(net, diffusion, n_per_class=args.per_class, steps=20, w=w, seed=1)
                cells.append(f"{e.acc:.1%} / {e.fd:.2f}")
            print(f"| {name} | {seed} | {run.steps} | {wall:.0f} ({run.steps_per_second:.1f}) | "
                  + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
