"""Chapter 2 benchmark: DiT training throughput, fp32 vs bf16 autocast vs torch.compile.

    COURSE_PROFILE=cpu python benchmarks/bench_ch2.py [--json]

(The chapter's notebook end to end, with what it measured: `python benchmarks/bench_chapter.py 02_dit`.)

One training step = sample t and ε, forward, ε-MSE, backward, AdamW step (fused on CUDA), as in the official
recipe without its EMA. Printed per configuration: steps/s, images/s and achieved TFLOP/s, where the FLOPs of one
step (forward + backward) are counted by `torch.utils.flop_counter`, which counts 2 FLOPs per multiply-add (the DiT
paper's "Gflops" count multiply-adds, i.e. half as many); the counts come from `course.lab.flops`.

- CPU: the course's DiT (DiT-Ti/2: depth 4, width 128, 4 heads, patch 2) on 8×8×1 digits, batch 128.
- CUDA (only if torch.cuda.is_available()): DiT-S/2 and DiT-B/2 of the paper at 32×32×4 latents, 1000 classes,
  learned σ, batch 256; "fp32" there means fp32 weights with TF32 matmuls, the official recipe.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from course.lab.config import PROFILE  # noqa: E402
from course.grader.exercises import reference_module  # noqa: E402
from course.lab.flops import forward_flops, training_step_flops  # noqa: E402

dit = reference_module("dit")
ALPHAS_CUMPROD = reference_module("diffusion").Diffusion().alphas_cumprod.float()


def make_step(model, optimizer, batch: int, shape: tuple[int, int, int], num_classes: int, device, amp: bool):
    """A closure running one training step on random data (the data loader is not what is measured)."""
    C, H, W = shape
    x0 = torch.randn(batch, C, H, W, device=device)
    y = torch.randint(0, num_classes, (batch,), device=device)
    ab = ALPHAS_CUMPROD.to(device)

    def step():
        t = torch.randint(0, len(ab), (batch,), device=device)
        noise = torch.randn_like(x0)
        a = ab[t].view(-1, 1, 1, 1)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(x_t, t, y)
            loss = F.mse_loss(out[:, :C].float(), noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    return step


def count_step_flops(make_model, batch: int, shape) -> float:
    """FLOPs (2 per multiply-add) of one forward + backward pass of `batch` images (`course.lab.flops`, meta device)."""
    with torch.device("meta"):
        model = make_model()
    y = torch.zeros(batch, dtype=torch.long)
    return float(training_step_flops(model, (batch, *shape), y=y))


def count_forward_flops(make_model, shape) -> float:
    """FLOPs (2 per multiply-add) of one forward pass of one image (`course.lab.flops`, meta device)."""
    with torch.device("meta"):
        model = make_model()
    return float(forward_flops(model, (1, *shape), y=torch.zeros(1, dtype=torch.long)))


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench(name: str, make_model, *, batch: int, shape, num_classes: int, device, mode: str, warmup: int,
          steps: int, step_flops: float) -> dict:
    torch.manual_seed(0)
    model = make_model().to(device).train()
    fused = {"fused": True} if device.type == "cuda" else {}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0, **fused)
    amp = mode in ("bf16", "bf16+compile")
    runner = torch.compile(model) if "compile" in mode else model
    step = make_step(runner, optimizer, batch, shape, num_classes, device, amp)
    row = {"device": device.type, "model": name, "batch": batch, "mode": mode}
    try:
        t0 = time.perf_counter()
        for _ in range(warmup):
            step()
        sync(device)
        row["warmup_s"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        for _ in range(steps):
            loss = step()
        sync(device)
        seconds = time.perf_counter() - t0
        if not torch.isfinite(loss):
            raise RuntimeError(f"loss {loss.item()}")
    except Exception as e:  # noqa: BLE001 - a mode that does not work here is reported, not fatal
        row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"
        return row
    row.update(steps_per_s=steps / seconds, images_per_s=steps * batch / seconds,
               tflops=steps * step_flops / seconds / 1e12, timed_steps=steps)
    return row


def show(row: dict) -> None:
    head = f"{row['device']:<5} {row['model']:<9} batch {row['batch']:<4} {row['mode']:<13}"
    if "error" in row:
        print(f"{head} did not run: {row['error']}", flush=True)
    else:
        print(f"{head} {row['steps_per_s']:8.2f} steps/s {row['images_per_s']:9.0f} img/s "
              f"{row['tflops']:8.3f} TFLOP/s   (warm-up {row['warmup_s']} s)", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object per configuration")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    parser.add_argument("--no-cuda", action="store_true", help="skip the GPU part")
    args = parser.parse_args()
    modes = ["fp32", "bf16"] + ([] if args.no_compile else ["compile", "bf16+compile"])
    rows = []
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, profile {PROFILE.name}; TFLOP/s count "
          "2 FLOPs per multiply-add (torch.utils.flop_counter)", flush=True)

    # --- CPU: the course's DiT on 8×8 digits -----------------------------------------------------------------
    cpu = torch.device("cpu")
    make = dit.course_models["DiT-Ti/2"]
    batch, shape = 128, (1, 8, 8)
    flops = count_step_flops(make, batch, shape)
    print(f"DiT-Ti/2 (course, 8×8×1): {count_forward_flops(make, shape) / 1e9:.4f} GFLOP forward per image; "
          f"{flops / 1e9:.1f} GFLOP per training step of {batch}", flush=True)
    warmup, steps = PROFILE.pick(ci=(2, 3), cpu=(5, 30), gpu=(5, 30))
    for mode in modes:
        row = bench("DiT-Ti/2", make, batch=batch, shape=shape, num_classes=10, device=cpu, mode=mode,
                    warmup=warmup + (3 if "compile" in mode else 0), steps=steps, step_flops=flops)
        rows.append(row)
        show(row) if not args.json else print(json.dumps(row), flush=True)

    # --- CUDA: the paper's DiT-S/2 and DiT-B/2 at 32×32×4, batch 256 ---------------------------------------------
    if torch.cuda.is_available() and not args.no_cuda:
        torch.backends.cuda.matmul.allow_tf32 = True  # the official recipe's "fp32"
        torch.backends.cudnn.allow_tf32 = True
        gpu = torch.device("cuda")
        print(f"GPU: {torch.cuda.get_device_name()}", flush=True)
        for name in ("DiT-S/2", "DiT-B/2"):
            make = dit.DiT_models[name]
            batch, shape = 256, (4, 32, 32)
            flops = count_step_flops(make, batch, shape)
            forward = count_forward_flops(make, shape)
            print(f"{name}: {forward / 1e9:.2f} GFLOP forward per image ({forward / 2e9:.2f} paper Gflops); "
                  f"{flops / 1e12:.2f} TFLOP per training step of {batch}", flush=True)
            for mode in modes:
                row = bench(name, make, batch=batch, shape=shape, num_classes=1000, device=gpu, mode=mode,
                            warmup=10 if "compile" in mode else 5, steps=PROFILE.pick(ci=5, cpu=30, gpu=50),
                            step_flops=flops)
                rows.append(row)
                show(row) if not args.json else print(json.dumps(row), flush=True)
                torch.cuda.empty_cache()
    else:
        print("CUDA is not available: the GPU part (DiT-S/2, DiT-B/2 at 32×32×4, batch 256) was skipped.")
    return 0 if all("error" not in r for r in rows if "compile" not in r["mode"]) else 1


if __name__ == "__main__":
    sys.exit(main())
