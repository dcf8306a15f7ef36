"""One training loop for every chapter.

Device chosen automatically, a tqdm progress bar, EMA weights, bf16 autocast on CUDA, seeded batches and noise,
checkpoints every N steps with an exact resume (a resumed run ends where an uninterrupted one does), Ctrl-C saves
a checkpoint, and a NaN loss stops with a message that says what to try.
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
from tqdm.auto import tqdm

from course.config import device as default_device


# On CUDA, reading the loss every step would stall the GPU: losses are fetched (and checked) in groups.
LOSS_SYNC_EVERY = {"cuda": 25}


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

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds if self.seconds else float("nan")

    def __repr__(self) -> str:
        tail = self.losses[-50:]
        return (f"TrainResult(steps={self.steps}, seconds={self.seconds:.1f}, "
                f"loss={sum(tail) / max(len(tail), 1):.4f}{', interrupted' if self.interrupted else ''})")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "run"


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """ema ← decay · ema + (1 − decay) · model, for all parameters at once; buffers are copied."""
    ema_params = [p for p in ema.parameters()]
    params = [p.detach() for p in model.parameters()]
    torch._foreach_lerp_(ema_params, params, 1.0 - decay)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)


def train(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, *, steps: int,
          batch_size: int = 128, lr: float = 2e-3, weight_decay: float = 0.0, warmup: int = 0,
          p_uncond: float = 0.1, ema_decay: float = 0.999, seed: int = 0, diffusion=None, loss_fn=None,
          grad_clip: float | None = None, device=None, amp: bool | None = None,
          checkpoint: str | Path | None = None, checkpoint_every: int | None = None, resume: bool = True,
          desc: str = "training", progress: bool = True) -> TrainResult:
    """Train `model` on (x, y) for `steps` AdamW steps of `batch_size` random examples.

    The loss is `loss_fn(model, xb, yb, generator)` when given; by default the diffusion loss of `diffusion`
    (cosine, T = 1000) with labels dropped to the null class with probability `p_uncond`, for guidance.
    `ema` follows the weights with `ema_decay`, warmed up as min(decay, (1 + n)/(10 + n)) so that short runs have
    a useful average too. With `checkpoint`, state is saved every `checkpoint_every` steps, at the end and on
    Ctrl-C, and a later call with the same path resumes from it (exactly, on the same device).
    """
    if steps < 0 or batch_size < 1:
        raise ValueError(f"steps should be ≥ 0 and batch_size ≥ 1, got steps={steps}, batch_size={batch_size}")
    dev = torch.device(device) if device is not None else default_device()
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

        def loss_fn(model, xb, yb, generator):
            return diffusion.loss(model, xb, yb, p_uncond=p_uncond, num_classes=num_classes, generator=generator)

    ema = copy.deepcopy(model).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay,
                                  **({"fused": True} if dev.type == "cuda" else {}))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    start_step, losses, elapsed, t0 = 0, [], 0.0, None
    path = Path(checkpoint) if checkpoint else None

    def state(step):
        return {"model": model.state_dict(), "ema": ema.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "step": step, "losses": losses, "seconds": seconds(),
                "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}

    def seconds():
        return elapsed + (time.perf_counter() - t0 if t0 is not None else 0.0)

    def save(step):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f"{path.suffix}.{os.getpid()}.tmp")
        torch.save(state(step), tmp)
        tmp.replace(path)  # atomic: a crash while saving never leaves a half-written checkpoint

    if path is not None and resume and path.exists():
        try:
            ckpt = torch.load(path, map_location=dev, weights_only=False)
            model.load_state_dict(ckpt["model"])
            ema.load_state_dict(ckpt["ema"])
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            generator.set_state(ckpt["generator"])
            torch.set_rng_state(ckpt["torch_rng"])
            if ckpt.get("cuda_rng") is not None and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(ckpt["cuda_rng"])
            start_step, losses, elapsed = ckpt["step"], list(ckpt["losses"]), ckpt["seconds"]
        except Exception as e:  # noqa: BLE001 - any unreadable checkpoint gets the same advice
            raise RuntimeError(
                f"the checkpoint {path} could not be resumed ({type(e).__name__}: {e}). It was left as it is. Is "
                "it from another model or configuration? Pass another `checkpoint=` path, or `resume=False` to "
                "start afresh (which overwrites it).") from None

    step, n = start_step, x.shape[0]
    sync_every = LOSS_SYNC_EVERY.get(dev.type, 1)
    pending: list[torch.Tensor] = []

    def flush(last_step: int):
        """Move pending losses (the last one of step `last_step`) to `losses`; stop with a clear message at the
        first one that is not finite."""
        if not pending:
            return
        values = torch.stack(pending).float().cpu().tolist()
        pending.clear()
        for i, value in enumerate(values):
            if not math.isfinite(value):
                first = last_step - len(values) + i + 1
                kept = f" The checkpoint {path} is kept." if path is not None and path.exists() else ""
                raise TrainingDiverged(
                    f"the loss became {value} at step {first} (lr={lr}, batch_size={batch_size}).{kept} "
                    "Hint: lower the learning rate or add warm-up (`warmup=`), clip gradients (`grad_clip=1.0`), "
                    "or look for a division by zero or a log of 0 in the loss or the model.")
            losses.append(value)

    bar = tqdm(total=steps, initial=start_step, desc=desc, disable=not progress, leave=True)
    t0 = time.perf_counter()
    try:
        while step < steps:
            idx = torch.randint(0, n, (batch_size,), generator=generator).to(dev)
            xb, yb = x[idx], (y[idx] if y is not None else None)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                loss = loss_fn(model, xb, yb, generator)
            pending.append(loss.detach())
            if sync_every == 1:
                flush(step + 1)  # before the update, so a NaN never reaches the weights
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            ema_update(ema, model, min(ema_decay, (1 + step) / (10 + step)))
            bar.update(1)
            if step % 25 == 0 or step == steps:
                flush(step)
                bar.set_postfix(loss=f"{sum(losses[-25:]) / len(losses[-25:]):.4f}")
            if path is not None and checkpoint_every and step % checkpoint_every == 0:
                flush(step)
                save(step)
        flush(step)
    except KeyboardInterrupt:
        bar.close()
        flush(step)
        path = path or Path("checkpoints") / f"{_slug(desc)}.pt"
        save(step)
        print(f"Interrupted at step {step}/{steps}; saved {path}. Call train(..., checkpoint='{path}') to go on.")
        return TrainResult(model, ema, losses, seconds(), step, interrupted=True, checkpoint=path)
    finally:
        bar.close()
    if path is not None and step > start_step:
        save(step)
    return TrainResult(model, ema, losses, seconds(), step, checkpoint=path)
