"""The learning rate's cool-down and the weights that sample: what `RECIPE`'s `cooldown` and `ema_decay` were chosen by.

    COURSE_SOLUTIONS=1 python benchmarks/bench_lr_decay.py --model uvit --steps 2000 --seeds 0 1   # ~4 min a run
    COURSE_SOLUTIONS=1 python benchmarks/bench_lr_decay.py --model dit --steps 1450
    COURSE_SOLUTIONS=1 python benchmarks/bench_lr_decay.py --model vit --steps 1200 --cooldowns 0 0.5

Trains a digits model of the studies (`course.lab.studies.BUILDS`: "uvit", "vit", or "dit" = DiT-Ti/2) with
`RECIPE` and the studies' seeds, once per cool-down (the fraction of the run over which the learning rate falls
linearly to 0; 0 keeps it constant after warm-up), and measures at the end the final weights and three EMAs of them
(0.999, 0.995 and 0.99, each warmed up as `train` warms up its own, kept beside the run): the judge's class accuracy
and the FD of 400 unguided DDIM samples (20 steps), with the FD floor at that count. (Over a run of n steps `train`'s
warm-up, min(decay, (1 + n)/(10 + n)), stays below 0.995 until step 1,790: shorter runs than that give 0.995 and
0.999 the same average.)
"""
from __future__ import annotations

import argparse
import copy

import torch

EMAS = (0.999, 0.995, 0.99)


def run(model_name: str, steps: int, cooldown: float, seed: int) -> dict:
    from course.diffusion import Diffusion
    from course.lab import train as training
    from course.lab.data import digits
    from course.lab.experiments import RECIPE, label_dropout
    from course.lab.metrics import evaluate, fd_floor
    from course.lab.studies import BUILDS

    x, y = digits("train")
    diffusion = Diffusion(T=1000, schedule="cosine")
    torch.manual_seed(seed)
    model = BUILDS[model_name](**({"name": "DiT-Ti/2"} if model_name == "dit" else {}))
    emas = {d: copy.deepcopy(model).eval().requires_grad_(False) for d in EMAS}
    update, calls = training.ema_update, [0]

    def ema_update(ema, net, decay):  # train()'s own update, then the EMAs kept here
        update(ema, net, decay)
        for d, e in emas.items():
            update(e, net, min(d, (1 + calls[0]) / (10 + calls[0])))
        calls[0] += 1

    training.ema_update = ema_update
    try:
        r = training.train(model, x, y, diffusion=diffusion, steps=steps, seed=seed, progress=False,
                           **{**RECIPE, "p_uncond": label_dropout(model), "cooldown": cooldown})
    finally:
        training.ema_update = update
    out = {"seconds": r.seconds, "floor": fd_floor(8, n=400)}
    for name, net in (("final", r.model), *((f"EMA {d:g}", e) for d, e in emas.items())):
        e = evaluate(net, diffusion, n_per_class=40, steps=20, w=1.0, seed=seed + 1)
        out[name] = (float(e.acc), float(e.fd))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=("uvit", "vit", "dit"), default="uvit")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--cooldowns", type=float, nargs="+", default=[0.0, 0.5])
    args = ap.parse_args()
    print(f"{args.model}, {args.steps} steps, RECIPE; unguided, 400 samples: accuracy / FD (FD / floor)")
    for seed in args.seeds:
        for cooldown in args.cooldowns:
            r = run(args.model, args.steps, cooldown, seed)
            cells = [f"{name} {r[name][0]:.1%} / {r[name][1]:.2f} ({r[name][1] / r['floor']:.1f}×)"
                     for name in ("final", *(f"EMA {d:g}" for d in EMAS))]
            print(f"seed {seed}  cool-down {cooldown:<4g} " + "   ".join(cells) + f"   ({r['seconds']:.0f} s)",
                  flush=True)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
