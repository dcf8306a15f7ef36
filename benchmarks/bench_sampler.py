"""DDIM's η on the chapters' headline models: deterministic (η = 0, chapter 0's sampler) or with DDPM's posterior
noise at every step (η = 1, the course's `SAMPLE_ETA`), and how many steps.

    COURSE_SOLUTIONS=1 python benchmarks/bench_sampler.py                    # DiT-Ti/2, U-ViT and DiffiT-T, seed 0
    COURSE_SOLUTIONS=1 python benchmarks/bench_sampler.py --models uvit --seeds 0 1 --etas 0 1

Trains each model as its chapter's headline does (`RECIPE`, the cpu profile's steps, chapter 0's cosine schedule),
then samples the same 400 digits (40 per class, the same noise seed) with each sampler setting and prints the judge's
class accuracy and the FD, unguided (w = 1) and at w = 2, beside the FD floor at 400 samples.
"""
from __future__ import annotations

import argparse

import torch

HEADLINE_STEPS = {"dit": 1150, "uvit": 1700, "diffit": 1150}  # the chapters' cpu profile


def build(name: str) -> torch.nn.Module:
    if name == "dit":
        from course.dit import create_dit

        return create_dit("DiT-Ti/2")
    if name == "uvit":
        from course.uvit import create_uvit

        return create_uvit()
    from course.diffit import create_diffit

    return create_diffit("DiffiT-T")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=list(HEADLINE_STEPS), choices=list(HEADLINE_STEPS))
    ap.add_argument("--seeds", type=int, nargs="*", default=[0])
    ap.add_argument("--etas", type=float, nargs="*", default=[0.0, 0.5, 1.0])
    ap.add_argument("--sample-steps", type=int, nargs="*", default=[10, 20, 50])
    ap.add_argument("--per-class", type=int, default=40)
    args = ap.parse_args()

    from course.diffusion import Diffusion
    from course.lab.data import digits
    from course.lab.experiments import RECIPE, label_dropout
    from course.lab.metrics import evaluate, fd_floor
    from course.lab.train import train

    x, y = digits("train")
    diffusion = Diffusion(T=1000, schedule="cosine")
    floor = fd_floor(8, n=10 * args.per_class)
    print(f"FD floor at {10 * args.per_class} samples: {floor:.2f}")
    for name in args.models:
        for seed in args.seeds:
            torch.manual_seed(seed)
            model = build(name)
            run = train(model, x, y, diffusion=diffusion, steps=HEADLINE_STEPS[name], seed=seed, progress=False,
                        **{**RECIPE, "p_uncond": label_dropout(model)})
            print(f"{name}, seed {seed}: {run.steps} steps in {run.seconds:.0f} s", flush=True)
            for steps in args.sample_steps:
                for eta in args.etas:
                    parts = []
                    for w in (1.0, 2.0):
                        e = evaluate(run.ema, diffusion, n_per_class=args.per_class, steps=steps, eta=eta, w=w,
                                     seed=seed + 1)
                        parts.append(f"w = {w:g}: {e.acc:6.1%} / FD {e.fd:5.2f} ({e.fd / floor:4.2f}×)")
                    print(f"  {steps:3d} steps, η = {eta:g}: " + "; ".join(parts), flush=True)


if __name__ == "__main__":
    main()
