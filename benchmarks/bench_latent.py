"""Chapter 6's latent DiT: what its headline run (the shapes' latents, 90 s of training on 2 cores) is limited by.

    COURSE_SOLUTIONS=1 python benchmarks/bench_latent.py                       # the chapter's run
    COURSE_SOLUTIONS=1 python benchmarks/bench_latent.py --kl 1e-4              # the latents of a larger KL weight
    COURSE_SOLUTIONS=1 python benchmarks/bench_latent.py --patch 1 --steps 900
    COURSE_SOLUTIONS=1 python benchmarks/bench_latent.py --hidden 128 --depth 6 --sample-steps 50 100 --etas 0 1
    COURSE_SOLUTIONS=1 python benchmarks/bench_latent.py --steps 16000         # the chapter's model, given time

Trains one DiT on the means of the course's shipped autoencoder of `--kl` (times the scale s), class-conditional,
with `RECIPE` (label dropout in the DiT) and DiT's linear schedule, as chapter 6's headline does, then measures
the judge's class accuracy and the FD of the decoded samples (DDIM with η = `SAMPLE_ETA` unless `--etas`, no
clipping), unguided and at w = 2, against the FD floor at the samples' count. Every option left at its default is the
chapter's; one line per sampler setting.
"""
from __future__ import annotations

import argparse

import torch


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kl", type=float, default=1e-6, help="the shipped autoencoder's KL weight (1e-6, 1e-4, 1e-2)")
    ap.add_argument("--patch", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=96)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--mlp-ratio", type=float, default=4.0)
    ap.add_argument("--steps", type=int, default=1800, help="default: chapter 6's headline (its cpu profile)")
    ap.add_argument("--lr", type=float, default=None, help="default: RECIPE's")
    ap.add_argument("--batch", type=int, default=None, help="default: RECIPE's")
    ap.add_argument("--cooldown", type=float, default=None, help="default: RECIPE's")
    ap.add_argument("--gamma", type=float, default=None, help="Min-SNR γ, default: RECIPE's; 0 = off")
    ap.add_argument("--schedule", default="linear", choices=["linear", "cosine"])
    ap.add_argument("--sample-steps", type=int, nargs="*", default=[20])
    ap.add_argument("--etas", type=float, nargs="*", default=None, help="DDIM's η; default: SAMPLE_ETA")
    ap.add_argument("--per-class", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    return ap


def main() -> None:
    args = parser().parse_args()

    from course.diffusion import Diffusion
    from course.lab.experiments import RECIPE, SAMPLE_ETA
    from course.lab.metrics import evaluate, fd_floor
    from course.lab.studies import BUILDS, LATENT_SIZE, shapes_data
    from course.lab.train import train

    size = LATENT_SIZE
    latents, y_train, decode = shapes_data(kl_weight=args.kl)  # scaled by s, as the study's latents
    diffusion = Diffusion(schedule=args.schedule)
    torch.manual_seed(args.seed)
    model = BUILDS["shapes-dit"](space="latents", patch_size=args.patch, hidden_size=args.hidden, depth=args.depth,
                                 num_heads=args.heads, mlp_ratio=args.mlp_ratio)  # the study's latent DiT
    recipe = {**RECIPE, "p_uncond": 0.0}
    for key, value in (("lr", args.lr), ("batch_size", args.batch), ("cooldown", args.cooldown)):
        if value is not None:
            recipe[key] = value
    if args.gamma is not None:
        recipe["min_snr_gamma"] = args.gamma or None
    run = train(model, latents, y_train, diffusion=diffusion, steps=args.steps, seed=args.seed, progress=False,
                **recipe)
    n = 10 * args.per_class
    floor = fd_floor(size, dataset="shapes", n=n)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"kl {args.kl:g}, patch {args.patch}, width {args.hidden}, depth {args.depth}, {params:.2f} M params, "
          f"{args.schedule} schedule, {recipe}: {args.steps} steps in {run.seconds:.0f} s "
          f"({run.steps_per_second:.1f}/s); loss of the last 100 steps "
          f"{sum(run.losses[-100:]) / len(run.losses[-100:]):.4f}; FD floor {floor:.2f} at {n} samples", flush=True)
    for sample_steps in args.sample_steps:
        for eta in args.etas if args.etas is not None else [SAMPLE_ETA]:
            parts = []
            for w in (1.0, 2.0):
                e = evaluate(run.ema, diffusion, size=size, dataset="shapes", n_per_class=args.per_class,
                             steps=sample_steps, eta=eta, shape=latents.shape[1:], clip=False, w=w, seed=args.seed,
                             decode=decode)
                parts.append(f"w = {w:g}: {e.acc:.1%} / FD {e.fd:.2f} ({e.fd / floor:.1f}×)")
            print(f"  {sample_steps} DDIM steps, η = {eta:g}: " + "; ".join(parts), flush=True)


if __name__ == "__main__":
    main()
