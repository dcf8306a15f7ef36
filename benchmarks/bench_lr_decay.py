"""A learning-rate decay at the end of the run, against `RECIPE`'s constant rate after warm-up.

    COURSE_SOLUTIONS=1 python benchmarks/bench_lr_decay.py --model uvit --steps 2000 --seeds 0 1   # ~4 min a run
    COURSE_SOLUTIONS=1 python benchmarks/bench_lr_decay.py --model dit --steps 1450
    COURSE_SOLUTIONS=1 python benchmarks/bench_lr_decay.py --model vit --steps 1200 --schedules constant last50

Trains a digits model of the studies (`course.lab.studies.BUILDS`: "uvit", "vit", or "dit" = DiT-Ti/2) with
`RECIPE` and the studies' seeds, once per schedule, and measures the EMA and the raw weights at the end: the judge's
class accuracy and the FD of 400 unguided DDIM samples (20 steps), with the FD floor at that count. Schedules, a
factor on the learning rate after warm-up: `constant` (`RECIPE` today), `last50` and `last20` (linear to 0 over the
last half or fifth of the run), `cosine` (over the whole run).

`course.lab.train.train` has no decay of its own (its code is in every study's hash, so a new keyword would stale
every record): this script multiplies the LambdaLR that `train` builds by the schedule's factor, for its own runs
only. Adopting a decay means a keyword of `train` for the schedule's length apart from `steps` (the studies train
milestone by milestone, resuming) and regenerating the records.
"""
from __future__ import annotations

import argparse
import math

import torch

SCHEDULES = {
    "constant": lambda s, n: 1.0,
    "last50": lambda s, n: min(1.0, max(0.0, (n - s) / (n - n // 2))),
    "last20": lambda s, n: min(1.0, max(0.0, (n - s) / (n - int(0.8 * n)))),
    "cosine": lambda s, n: 0.5 * (1 + math.cos(math.pi * min(s, n) / n)),
}


def run(model_name: str, steps: int, schedule: str, seed: int) -> dict:
    from course.diffusion import Diffusion
    from course.lab import train as training
    from course.lab.data import digits
    from course.lab.experiments import RECIPE, label_dropout
    from course.lab.metrics import evaluate, fd_floor
    from course.lab.studies import BUILDS

    factor = SCHEDULES[schedule]
    base = torch.optim.lr_scheduler.LambdaLR

    class Decayed(base):  # train()'s warm-up lambda, times the schedule's factor
        def __init__(self, optimizer, fn):
            super().__init__(optimizer, lambda s: fn(s) * factor(s, steps))

    x, y = digits("train")
    diffusion = Diffusion(T=1000, schedule="cosine")
    torch.manual_seed(seed)
    model = BUILDS[model_name](**({"name": "DiT-Ti/2"} if model_name == "dit" else {}))
    torch.optim.lr_scheduler.LambdaLR = Decayed
    try:
        r = training.train(model, x, y, diffusion=diffusion, steps=steps, seed=seed, progress=False,
                           **{**RECIPE, "p_uncond": label_dropout(model)})
    finally:
        torch.optim.lr_scheduler.LambdaLR = base
    out = {"seconds": r.seconds}
    for name, net in (("ema", r.ema), ("raw", model)):
        e = evaluate(net, diffusion, n_per_class=40, steps=20, w=1.0, seed=seed + 1)
        out[name] = (float(e.acc), float(e.fd))
    out["floor"] = fd_floor(8, n=400)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=("uvit", "vit", "dit"), default="uvit")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--schedules", nargs="+", choices=sorted(SCHEDULES), default=["constant", "last50"])
    args = ap.parse_args()
    print(f"{args.model}, {args.steps} steps, RECIPE; unguided, 400 samples: accuracy / FD (FD / floor)")
    for seed in args.seeds:
        for schedule in args.schedules:
            r = run(args.model, args.steps, schedule, seed)
            cells = [f"{name} {r[name][0]:.1%} / {r[name][1]:.2f} ({r[name][1] / r['floor']:.1f}×)"
                     for name in ("ema", "raw")]
            print(f"seed {seed}  {schedule:<9} " + "   ".join(cells) + f"   ({r['seconds']:.0f} s)", flush=True)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
