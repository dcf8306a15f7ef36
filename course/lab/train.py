"""One training loop for every chapter.

Device chosen automatically, a tqdm progress bar, EMA weights, bf16 autocast on CUDA, seeded batches and noise,
checkpoints every N steps that resume on any device (exactly on the same one: a resumed run ends where an
uninterrupted one does), Ctrl-C saves a checkpoint, and a NaN loss stops with a message that says what to try.

Fast on a GPU: every random number (batch indices, timesteps, noise, dropped labels) is drawn on the device by a
seeded `torch.Generator` there, nothing waits for the host inside a step (losses are read in groups), and
`compile=` runs the model through `torch.compile` (CUDA graphs on CUDA, which removes the launch overhead that
dominates small models).

Under `torchrun` (see `tools/train_ddp.py`) the same loop trains with `DistributedDataParallel`: the global batch
is split across the processes, process 0 shows the progress bar and writes the checkpoints, and every process
keeps the same EMA.
"""
from __future__ import annotations

import copy
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from course.lab.config import device as default_device

# On CUDA, reading the loss every step would stall the GPU: losses are fetched (and checked) in groups.
LOSS_SYNC_EVERY = {"cuda": 25}
# The progress bar shows the mean loss of (at least) this many steps.
SHOW_LOSS_EVERY = 25
# What `compile=True` means on each device: on CUDA, CUDA graphs ("reduce-overhead") replay a whole forward and
# backward pass as one launch, which is what small models need.
COMPILE_MODE = {"cuda": "reduce-overhead"}
# `compile=None` compiles on these devices when at least this many steps are left. Compiling a small model costs
# ~10-30 s the first time (less once cached) and CUDA graphs save ~1-2 ms a step over an eager step that never
# waits for the host, so a few thousand steps win it back: an estimate, that `benchmarks/bench_gpu.py` measures
# ("compiling pays for runs of ≥ N steps"). The CPU compiles only when asked.
AUTO_COMPILE_MIN_STEPS = {"cuda": 5000}
# With compile, the first steps trace, compile and record CUDA graphs: they are timed apart (`compile_seconds`).
COMPILE_WARMUP_STEPS = 3


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class TrainResult:
    model: torch.nn.Module
    ema: torch.nn.Module
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0
    interrupted: bool = False
    checkpoint: Path | None = None
    compile_seconds: float = 0.0  # part of `seconds` spent in the first, compiling steps
    compile_steps: int = 0  # how many steps that was
    timeline: list[tuple[int, float]] = field(default_factory=list)  # (step, seconds) each time losses were read

    @property
    def steps_per_second(self) -> float:
        """Training speed, the compiling steps left out."""
        seconds, steps = self.seconds - self.compile_seconds, self.steps - self.compile_steps
        return steps / seconds if seconds > 0 else float("nan")

    def __repr__(self) -> str:
        tail = self.losses[-50:]
        return (f"TrainResult(steps={self.steps}, seconds={self.seconds:.1f}, "
                f"loss={sum(tail) / max(len(tail), 1):.4f}{', interrupted' if self.interrupted else ''})")


def slug(text: str) -> str:
    """`text` as a file name: runs of other characters than letters, digits, `_`, `.` and `-` become one `-`."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "run"


def distributed() -> tuple[int, int]:
    """(rank, world size): (0, 1) unless `torch.distributed` was initialised (under `torchrun`)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """ema ← decay · ema + (1 − decay) · model, for all parameters at once; buffers are copied."""
    ema_params = [p for p in ema.parameters()]
    params = [p.detach() for p in model.parameters()]
    torch._foreach_lerp_(ema_params, params, 1.0 - decay)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)


def min_snr_weights(alphas_cumprod: torch.Tensor, t: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-γ loss weights for ε-prediction (Hang et al., "Efficient Diffusion Training via Min-SNR Weighting
    Strategy", ICCV 2023, Eq. 10 with SNR(t) = ᾱ_t / (1 − ᾱ_t)): w_t = min(SNR(t), γ) / SNR(t).

    The ε-loss of a nearly clean image (huge SNR) is worth little to the samples but pulls the shared weights
    hard; these weights cap its share, so that the timesteps stop fighting each other. (B,) for t of shape (B,)."""
    a = alphas_cumprod[t]
    snr = a / (1 - a)
    return (snr.clamp(max=gamma) / snr).to(torch.float32)


def diffusion_loss_fn(diffusion, *, batch_size: int, rows: slice, p_uncond: float, num_classes: int | None,
                      device: torch.device, min_snr_gamma: float | None = None):
    """The default loss: `diffusion.loss`, with its random numbers drawn on `device`.

    t, ε and the dropped labels are drawn for the whole (global) `batch_size` by the generator, on the device,
    and this process keeps its `rows` of them: a run gives the same numbers whatever the number of processes.
    With `min_snr_gamma`, each example's ε-loss is weighted by `min_snr_weights` (x_t still comes from the
    `q_sample` that `ddpm_loss` uses: the learner's, or the reference standing in for it).
    """
    method = type(diffusion).loss
    if method.__qualname__ != "Diffusion.loss" or "ddpm_loss" not in method.__globals__:
        if min_snr_gamma is not None:
            raise ValueError("min_snr_gamma needs the course's Diffusion (its q_sample); pass a loss_fn instead")
        # A process with a loss of its own: call it (it draws its own numbers, on `generator.device`).
        return lambda model, x0, y, generator: diffusion.loss(model, x0, y, p_uncond=p_uncond,
                                                              num_classes=num_classes, generator=generator)
    # The `ddpm_loss` that `diffusion.loss` calls: the learner's, or the reference standing in for it.
    ddpm_loss = method.__globals__["ddpm_loss"]
    q_sample = method.__globals__["q_sample"]
    # ᾱ on the device once (MPS has no float64), so no step copies it from the host.
    alphas_cumprod = diffusion.alphas_cumprod.to(device, torch.float32 if device.type == "mps" else None)

    def loss_fn(model, x0, y, generator):
        t = torch.randint(0, diffusion.T, (batch_size,), generator=generator, device=device)[rows]
        noise = torch.randn((batch_size, *x0.shape[1:]), generator=generator, device=device, dtype=x0.dtype)[rows]
        if y is not None and p_uncond > 0:
            drop = torch.rand(batch_size, generator=generator, device=device)[rows] < p_uncond
            y = torch.where(drop, torch.full_like(y, num_classes), y)  # the null class
        if min_snr_gamma is None:
            return ddpm_loss(model, x0, t, noise, alphas_cumprod, y)
        eps = model(q_sample(x0, t, noise, alphas_cumprod), t, y)[:, : x0.shape[1]]  # (B, C, H, W)
        per_example = (eps.float() - noise.float()).pow(2).flatten(1).mean(1)  # (B,)
        return (min_snr_weights(alphas_cumprod, t, min_snr_gamma) * per_example).mean()

    return loss_fn


def _restore_optimizer(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load an optimizer state saved on any device: keep this optimizer's kernel choice (fused or not) and put
    each step counter where that kernel wants it (on the parameter's device when fused, else on the CPU)."""
    kernel = {k: optimizer.defaults.get(k) for k in ("fused", "foreach", "capturable")}
    optimizer.load_state_dict(state)
    for group in optimizer.param_groups:
        group.update(kernel)
        on_device = bool(group.get("fused") or group.get("capturable"))
        for p in group["params"]:
            s = optimizer.state.get(p, {})
            if torch.is_tensor(s.get("step")):
                s["step"] = s["step"].to(p.device if on_device else "cpu", torch.float32)


def lr_factor(step: int, *, warmup: int, cooldown: float, total: int) -> float:
    """The learning rate of step `step` (from 0), as a fraction of `lr`: a linear warm-up over `warmup` steps, then
    constant, then (with `cooldown` > 0) a linear fall to 0 over the last `cooldown` fraction of `total` steps."""
    factor = min(1.0, (step + 1) / warmup) if warmup else 1.0
    start = total - round(cooldown * total)  # the first step of the cool-down
    if start < total and step >= start:
        factor *= max(0.0, (total - step) / (total - start))
    return factor


def train(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, *, steps: int,
          batch_size: int = 128, lr: float = 2e-3, weight_decay: float = 0.0, warmup: int = 0,
          cooldown: float = 0.0, schedule_steps: int | None = None,
          p_uncond: float = 0.1, ema_decay: float = 0.999, seed: int = 0, diffusion=None, loss_fn=None,
          min_snr_gamma: float | None = None,
          grad_clip: float | None = None, device=None, amp: bool | None = None,
          checkpoint: str | Path | None = None, checkpoint_every: int | None = None, resume: bool = True,
          desc: str = "training", progress: bool = True, compile: bool | str | None = None) -> TrainResult:
    """Train `model` on (x, y) for `steps` AdamW steps of `batch_size` random examples.

    The loss is `loss_fn(model, xb, yb, generator)` when given; by default the diffusion loss of `diffusion`
    (cosine, T = 1000) with labels dropped to the null class with probability `p_uncond`, for guidance, and each
    example weighted by Min-SNR-γ when `min_snr_gamma` is set (`min_snr_weights`).
    The learning rate warms up over `warmup` steps and, with `cooldown` > 0, falls linearly to 0 over the last
    `cooldown` fraction of `schedule_steps` (default `steps`; `lr_factor`). A run trained in pieces (train to 500
    steps, look, resume to 1000) passes its whole length as `schedule_steps`, so that every piece follows one schedule.
    `generator` is a seeded `torch.Generator` on the training device: draw with `device=generator.device`.
    `ema` follows the weights with `ema_decay`, warmed up as min(decay, (1 + n)/(10 + n)) so that short runs have
    a useful average too; `ema_decay=0` keeps the weights themselves (after a cool-down, they need no average).
    With `checkpoint`, state is saved every `checkpoint_every` steps, at the end and on
    Ctrl-C, and a later call with the same path resumes from it (exactly on the same device; on another device
    the random numbers of the rest of the run differ).

    `compile`: False runs eagerly; True runs the model through `torch.compile` (CUDA graphs on CUDA); a string
    is a `torch.compile` mode ("default", "reduce-overhead", "max-autotune", ...) or "cudagraphs" (CUDA graphs
    without generating kernels: compiles in seconds); None (the default) compiles on CUDA when at least
    `AUTO_COMPILE_MIN_STEPS` steps are left to run, and never on the CPU. The first, compiling steps are shown by
    the bar and timed apart (`TrainResult.compile_seconds`; `steps_per_second` leaves them out). What is compiled
    is the model's `forward`: a `loss_fn` should call the model itself, not its other methods, which would run
    uncompiled (chapter 4's HybViT loss reaches `denoise` and `classify` through `forward`: `ThroughForward`).

    Under `torchrun`, `batch_size` is the global batch, split evenly across the processes. The default loss
    draws the random numbers of the whole global batch on every process (which all hold the same generator
    state) and keeps this process's rows, so the run does not depend on the number of processes; a custom
    `loss_fn` should do the same (or its processes draw the same noise for different images).
    """
    if steps < 0 or batch_size < 1:
        raise ValueError(f"steps should be ≥ 0 and batch_size ≥ 1, got steps={steps}, batch_size={batch_size}")
    total = steps if schedule_steps is None else schedule_steps
    if not 0.0 <= cooldown <= 1.0 or total < steps:
        raise ValueError(f"cooldown should be a fraction of the run in [0, 1] and schedule_steps ≥ steps, got "
                         f"cooldown={cooldown}, schedule_steps={schedule_steps}, steps={steps}")
    rank, world = distributed()
    if batch_size % world:
        raise ValueError(f"batch_size={batch_size} should split evenly across the {world} processes")
    local = batch_size // world
    rows = slice(rank * local, (rank + 1) * local)  # this process's part of every global batch
    dev = torch.device(device) if device is not None else default_device()
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())  # torchrun: the process's own GPU
    amp = dev.type == "cuda" if amp is None else amp
    model.to(dev).train()
    x = x.to(dev)
    y = y.to(dev) if y is not None else None
    if loss_fn is None:
        if diffusion is None:
            from course.diffusion import Diffusion

            diffusion = Diffusion()
        num_classes = getattr(model, "num_classes", None)
        if y is not None and p_uncond > 0 and num_classes is None:
            raise ValueError("label dropout needs the model's `num_classes` (the null label); set p_uncond=0")
        if y is not None and hasattr(diffusion, "check_label_dropout"):
            diffusion.check_label_dropout(model, p_uncond)  # one home for label dropout, never two
        loss_fn = diffusion_loss_fn(diffusion, batch_size=batch_size, rows=rows, p_uncond=p_uncond,
                                    num_classes=num_classes, device=dev, min_snr_gamma=min_snr_gamma)
    elif min_snr_gamma is not None:
        raise ValueError("min_snr_gamma weights the default loss; a custom loss_fn weights its own terms")

    runner = model  # what the loss calls: the model, wrapped for DDP and compiled when asked
    if world > 1:
        runner = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda"
                                                           else None)  # starts from process 0's weights
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay,
                                  **({"fused": True} if dev.type == "cuda" else {}))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, warmup=warmup, cooldown=cooldown, total=total))
    generator = torch.Generator(dev).manual_seed(seed)
    torch.manual_seed(seed)
    start_step, losses, elapsed, t0 = 0, [], 0.0, None
    compiled = {"seconds": 0.0, "steps": 0}
    path = Path(checkpoint) if checkpoint else None

    def state(step):
        return {"model": model.state_dict(), "ema": ema.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "step": step, "losses": losses, "seconds": seconds(),
                "compiled": dict(compiled), "generator": generator.get_state(), "generator_device": dev.type,
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None}

    def seconds():
        return elapsed + (time.perf_counter() - t0 if t0 is not None else 0.0)

    def save(step):
        if rank != 0:
            return  # one process writes
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f"{path.suffix}.{os.getpid()}.tmp")
        torch.save(state(step), tmp)
        tmp.replace(path)  # atomic: a crash while saving never leaves a half-written checkpoint

    if path is not None and resume and path.exists():
        try:
            # Read onto the CPU whatever device wrote it; load_state_dict puts each tensor where it belongs, and
            # the random-number states must stay CPU ByteTensors.
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
            model.load_state_dict(ckpt["model"])
            ema.load_state_dict(ckpt["ema"])
            _restore_optimizer(optimizer, ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            torch.set_rng_state(ckpt["torch_rng"])
            start_step, losses, elapsed = ckpt["step"], list(ckpt["losses"]), ckpt["seconds"]
            compiled.update(ckpt.get("compiled", {}))
            saved_on = ckpt.get("generator_device", "cpu")
            if saved_on == dev.type:
                generator.set_state(ckpt["generator"])
                cuda_rng = ckpt.get("cuda_rng")
                if dev.type == "cuda" and cuda_rng is not None:
                    cuda_rng = cuda_rng[dev.index] if isinstance(cuda_rng, (list, tuple)) else cuda_rng
                    torch.cuda.set_rng_state(cuda_rng, dev)
            else:  # another kind of device wrote it: its random states do not fit here, so go on from new seeds
                generator.manual_seed(seed + start_step)
                torch.manual_seed(seed + start_step)
                if rank == 0:
                    print(f"Resuming on {dev.type} a run saved on {saved_on}: the rest of the run "
                          "draws new random numbers, so it will not repeat an uninterrupted run exactly.")
        except Exception as e:  # noqa: BLE001 - any unreadable checkpoint gets the same advice
            raise RuntimeError(
                f"the checkpoint {path} could not be resumed ({type(e).__name__}: {e}). It was left as it is. Is "
                "it from another model or configuration? Pass another `checkpoint=` path, or `resume=False` to "
                "start afresh (which overwrites it).") from None

    if compile is None:  # compile when the steps left can win back the time it takes
        compile = steps - start_step >= AUTO_COMPILE_MIN_STEPS.get(dev.type, math.inf)
    if compile is True:  # CUDA graphs do not mix well with DDP's gradient all-reduce
        compile_mode = COMPILE_MODE.get(dev.type, "default") if world == 1 else "default"
    else:
        compile_mode = compile or None  # a mode's name, or None: eager
    if compile_mode == "cudagraphs":  # after loading: the compiled model shares the model's parameters
        runner = torch.compile(runner, backend="cudagraphs")
    elif compile_mode:
        runner = torch.compile(runner, mode=compile_mode)
    step, n = start_step, x.shape[0]
    sync_every = LOSS_SYNC_EVERY.get(dev.type, 1)
    warm_until = start_step + COMPILE_WARMUP_STEPS if compile_mode else start_step
    pending: list[torch.Tensor] = []
    timeline: list[tuple[int, float]] = []

    def flush(last_step: int):
        """Move pending losses (the last one of step `last_step`) to `losses`, averaged over the processes; stop
        with a clear message at the first one that is not finite. Reading them waits for the device."""
        if not pending:
            return
        values = torch.stack(pending).float()
        pending.clear()
        if world > 1:
            dist.all_reduce(values)  # every process calls flush at the same steps
            values /= world
        values = values.cpu().tolist()
        timeline.append((last_step, seconds()))
        for i, value in enumerate(values):
            if not math.isfinite(value):
                first = last_step - len(values) + i + 1
                kept = f" The checkpoint {path} is kept." if path is not None and path.exists() else ""
                raise TrainingDiverged(
                    f"the loss became {value} at step {first} (lr={lr}, batch_size={batch_size}).{kept} "
                    "Hint: lower the learning rate or add warm-up (`warmup=`), clip gradients (`grad_clip=1.0`), "
                    "or look for a division by zero or a log of 0 in the loss or the model.")
            losses.append(value)

    bar = tqdm(total=steps, initial=start_step, desc=desc, disable=not progress or rank != 0, leave=True)
    if step < warm_until:
        bar.set_postfix_str(f"compiling ({compile_mode})")
    shown = step
    t0 = time.perf_counter()
    try:
        while step < steps:
            # One global batch: every process draws all of its indices and keeps its own rows.
            idx = torch.randint(0, n, (batch_size,), generator=generator, device=dev)[rows]
            xb, yb = x[idx], (y[idx] if y is not None else None)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                loss = loss_fn(runner, xb, yb, generator)
            pending.append(loss.detach())
            if sync_every == 1:
                flush(step + 1)  # before the update, so a NaN never reaches the weights
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # under DDP, the gradients are averaged over the processes here
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            ema_update(ema, model, min(ema_decay, (1 + step) / (10 + step)))
            bar.update(1)
            if step == warm_until and step > start_step:  # the compiling steps are done: time them apart
                flush(step)
                took = seconds() - elapsed  # this call's time so far
                compiled["seconds"] += took
                compiled["steps"] += step - start_step
                bar.set_postfix_str(f"compiled in {took:.0f} s")
            if step % sync_every == 0 or step == steps:
                flush(step)
                if step - shown >= SHOW_LOSS_EVERY or step == steps:
                    tail = losses[-SHOW_LOSS_EVERY:]
                    bar.set_postfix(loss=f"{sum(tail) / len(tail):.4f}", refresh=False)
                    shown = step
            if path is not None and checkpoint_every and step % checkpoint_every == 0:
                flush(step)
                save(step)
        flush(step)
    except KeyboardInterrupt:
        bar.close()
        flush(step)
        path = path or Path("checkpoints") / f"{slug(desc)}.pt"
        save(step)
        if rank == 0:
            print(f"Interrupted at step {step}/{steps}; saved {path}. Call train(..., checkpoint='{path}') to go on.")
        return TrainResult(model, ema, losses, seconds(), step, interrupted=True, checkpoint=path,
                           compile_seconds=compiled["seconds"], compile_steps=compiled["steps"], timeline=timeline)
    finally:
        bar.close()
    if path is not None and step > start_step:
        save(step)
    if world > 1:
        # The checkpoint is complete before any process goes on (and perhaps resumes from it).
        dist.barrier(device_ids=[dev.index]) if dev.type == "cuda" else dist.barrier()
    return TrainResult(model, ema, losses, seconds(), step, checkpoint=path, compile_seconds=compiled["seconds"],
                       compile_steps=compiled["steps"], timeline=timeline)
