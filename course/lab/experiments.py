"""The chapters' headline runs: one main model per chapter, trained with one recipe long enough to learn its labels,
and measured the same way everywhere.

The recipe (`RECIPE`) came out of the sweep in `benchmarks/bench_recipe.py`: AdamW at lr 3·10⁻³ with 50 warm-up
steps, batch 64 (more, smaller steps beat fewer large ones on a short budget), and the ε-loss weighted by Min-SNR-γ
with γ = 5 (Hang et al., "Efficient Diffusion Training via Min-SNR Weighting Strategy", ICCV 2023), which stops the
nearly clean timesteps from dominating the gradient. The learning rate then falls linearly to 0 over the second half
of the run (`cooldown=0.5`), and the samples come from the final weights (`ema_decay=0.0`): after a cool-down they
beat both an EMA of the same run and the constant rate with its EMA, on every model that
`benchmarks/bench_lr_decay.py` measured (accuracy and FD of unguided samples: U-ViT, ViT and DiT-Ti/2).

The samples of the class-conditional headlines and studies come from DDIM with η = 1 (`SAMPLE_ETA`): each of its
20 steps adds fresh noise of DDPM's posterior variance (DDIM, Eq. 16), where η = 0 is chapter 0's deterministic
sampler. The DDIM paper finds η = 0 best on short step sequences for its well-trained models; for these briefly
trained ones `benchmarks/bench_sampler.py` compares both on the chapters' headline models (unguided class accuracy
and FD). Chapter 4's unconditional HybViT samples with η = 0, as its record was measured.

`headline(...)` trains a model, samples every class without guidance (w = 1) and with it (w = 2), measures the
judge's class accuracy and the FD against the test digits, computes the FD floor at the same number of samples, and
glues the numbers under the names every chapter shares (shared/SYLLABUS.md: `headline_acc_w1`, `headline_acc_w2`,
`headline_fd`, `headline_fd_floor`, `headline_train_seconds`) so that the prose and the tests read them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from course.lab.config import PROFILE
from course.lab.metrics import Evaluation, evaluate, fd_floor
from course.lab.train import TrainResult, train

RECIPE = dict(lr=3e-3, batch_size=64, warmup=50, cooldown=0.5, ema_decay=0.0, min_snr_gamma=5.0)
SAMPLE_ETA = 1.0  # DDIM's η for the class-conditional headlines and studies (chapter 4 keeps η = 0)


def label_dropout(model) -> float:
    """The loss's label-dropout probability for `model`: 0 when the model drops labels itself (DiT's
    `y_embedder.dropout_prob`), else the 10 % of classifier-free guidance."""
    own = getattr(getattr(model, "y_embedder", None), "dropout_prob", 0.0)
    return 0.0 if isinstance(own, (int, float)) and own > 0 else 0.1


@dataclass
class Headline:
    name: str
    run: TrainResult
    plain: Evaluation  # w = 1
    guided: Evaluation  # w = `w_guided`
    floor: float  # FD of as many real training digits as there are samples
    w_guided: float = 2.0

    def summary(self) -> str:
        return (f"{self.name}: {self.run.steps} steps in {self.run.seconds:.0f} s "
                f"({self.run.steps_per_second:.1f} steps/s); w = 1: accuracy {self.plain.acc:.1%}, FD "
                f"{self.plain.fd:.2f}; w = {self.w_guided:g}: accuracy {self.guided.acc:.1%}, FD "
                f"{self.guided.fd:.2f}; FD floor at {len(self.plain.labels)} samples {self.floor:.2f} "
                f"(FD {self.plain.fd / self.floor:.1f}× the floor)")


def headline(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, diffusion, *, name: str, steps: int,
             n_per_class: int | None = None, sample_steps: int = 20, eta: float = SAMPLE_ETA, w_guided: float = 2.0,
             seed: int = 0, glue_names: bool = True, show: bool = True, **overrides) -> Headline:
    """Train `model` on (x, y) with `RECIPE` (or `overrides`) for `steps`, then measure it: w = 1 and w = 2 samples
    (`sample_steps` DDIM steps with noise `eta`), class accuracy, FD and the FD floor at the samples' count. Glues
    the chapter's headline numbers and shows the samples, one row per class."""
    from course import glue

    n_per_class = n_per_class or PROFILE.pick(ci=2, cpu=40, gpu=100)
    recipe = {**RECIPE, "p_uncond": label_dropout(model), **overrides}
    run = train(model, x, y, diffusion=diffusion, steps=steps, seed=seed, desc=name, **recipe)
    plain, guided = (evaluate(run.ema, diffusion, n_per_class=n_per_class, steps=sample_steps, eta=eta, w=w,
                              seed=seed + 1) for w in (1.0, w_guided))
    floor = fd_floor(8, n=len(plain.labels))
    result = Headline(name, run, plain, guided, floor, w_guided)
    if glue_names:
        glue("headline_acc_w1", float(plain.acc))
        glue("headline_acc_w2", float(guided.acc))
        glue("headline_fd", float(plain.fd))
        glue("headline_fd_floor", float(floor))
        glue("headline_train_seconds", float(run.seconds))
        glue("headline_steps", int(run.steps))
        glue("headline_n", int(len(plain.labels)))
        glue("headline_fd_ratio", float(plain.fd / floor))
    if show:
        import matplotlib.pyplot as plt

        from course.lab.plots import class_grid

        print(result.summary())
        fig, axes = plt.subplots(1, 2, figsize=(9, 4))
        for ax, e in zip(axes, (plain, guided)):
            class_grid(e.samples, e.labels, per_class=10, ax=ax,
                       title=f"w = {e.w:g}: accuracy {e.acc:.1%}, FD {e.fd:.2f}")
        plt.tight_layout()
        plt.show()
    return result


# ---------------------------------------------------------------------------------------------------------------
# Chapter 7: every backbone at one budget, two at a time
# ---------------------------------------------------------------------------------------------------------------
def backbone_run(build, conditional: bool, seed: int, steps: int, n_eval: int, sample_steps: int) -> dict:
    """Chapter 7's run of one backbone: `build()` a fresh model, train it on the digits with `RECIPE` for `steps`
    steps (labels dropped for guidance when `conditional`; an unconditional model gets none), and measure its
    unguided samples (`n_eval` per class, DDIM with `sample_steps` steps and η = `SAMPLE_ETA`): the judge's
    accuracy and FD at a third, two thirds and the end of the run. Returns {"curve": [{"steps", "seconds", "fd",
    "acc"}, ...], "steps/s", "samples", "labels"} (the samples of the end)."""
    import tempfile

    from course.diffusion import Diffusion
    from course.lab.data import digits

    x, y = digits("train")
    diffusion = Diffusion()  # the cosine schedule, T = 1000
    torch.manual_seed(seed)
    model = build()
    p_uncond = label_dropout(model) if conditional else 0.0
    curve = []
    with tempfile.TemporaryDirectory() as tmp:
        for m in (steps // 3, 2 * steps // 3, steps):
            r = train(model, x, y if conditional else None, diffusion=diffusion, steps=m, schedule_steps=steps,
                      seed=seed, checkpoint=f"{tmp}/run.pt", progress=False, **{**RECIPE, "p_uncond": p_uncond})
            e = evaluate(r.ema, diffusion, n_per_class=n_eval, steps=sample_steps, eta=SAMPLE_ETA, w=1.0,
                         seed=100 + seed)
            curve.append({"steps": m, "seconds": r.seconds, "fd": e.fd, "acc": e.acc})
    return {"curve": curve, "steps/s": r.steps_per_second, "samples": e.samples, "labels": e.labels}


def run_backbones(builders: dict, conditional: dict, seeds: list[int], steps: int, n_eval: int, sample_steps: int,
                  workers: int = 1) -> dict[str, list[dict]]:
    """`backbone_run` for every backbone of `builders` (name → a function that builds a fresh model; importable,
    e.g. a `functools.partial`, when `workers` > 1) and every seed, `workers` runs at a time in processes of one
    thread each, under one progress bar. The workers stand in the reference for unfinished exercises, as `setup()`
    does. Returns {name: [the run of each seed, in the order of `seeds`]}."""
    from tqdm.auto import tqdm

    from course.grader.exercises import ALL_MODULES

    jobs = [(name, seed) for name in builders for seed in seeds]
    calls = [(builders[name], conditional[name], seed, steps, n_eval, sample_steps) for name, seed in jobs]
    done = {}
    for i, result in tqdm(in_processes(backbone_run, calls, workers, borrow=tuple(ALL_MODULES)), total=len(calls),
                          desc="backbones × seeds: runs"):
        done[jobs[i]] = result
    return {name: [done[name, seed] for seed in seeds] for name in builders}


def _worker_start(borrow: tuple) -> None:
    """A worker process: one thread, and (as `setup` does in a notebook) the reference for the exercises of
    `borrow` that are not done yet."""
    torch.set_num_threads(1)
    if borrow:
        from course import reference_mode, use_reference_for_unfinished

        if not reference_mode():
            use_reference_for_unfinished(borrow)


def in_processes(fn, calls: list[tuple], workers: int, borrow: tuple = ()):
    """Yield (i, fn(*calls[i])) for every call as it ends, the calls spread over `workers` fresh processes of one
    thread each: the course's small models use a second thread poorly and a second core well. With one worker the
    calls run here, in order. `borrow`: exercise modules whose unfinished exercises the workers take from the
    reference, as `setup` does in the notebook. A call that raises cancels the ones not started and raises here.
    `fn` and the calls' arguments travel to the workers, so they must be importable (no lambdas)."""
    if workers <= 1 or len(calls) <= 1:
        for i, args in enumerate(calls):
            yield i, fn(*args)
        return
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no threads or locks inherited
    with ProcessPoolExecutor(min(workers, len(calls)), mp_context=context, initializer=_worker_start,
                             initargs=(tuple(borrow),)) as pool:
        pending = {pool.submit(fn, *args): i for i, args in enumerate(calls)}
        try:
            while pending:
                ended, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in ended:
                    yield pending.pop(future), future.result()
        except BaseException:
            for future in pending:
                future.cancel()
            raise
