"""GPU benchmark: each chapter's `gpu` profile, and the course's training loop against the best DiT recipe.

    python benchmarks/bench_gpu.py                  # on a CUDA machine: notebooks, DiT-S/2 and DiT-B/2, small U-Net
    python benchmarks/bench_gpu.py --levers         # also each speed lever of the loop on DiT-B/2
    python benchmarks/bench_gpu.py --no-notebooks   # only the throughput part
    python benchmarks/bench_gpu.py --smoke          # anywhere, CPU included: tiny sizes, a few steps, eager

1. Notebooks: each `book/NN_*.ipynb` runs end to end in a fresh kernel (reference mode, `COURSE_PROFILE=gpu`)
   through the shared runner `notebook_runner.py`; printed: wall time against the 2-min budget of a chapter, and
   its headline numbers.
2. Throughput on random data, all in this one run so that the numbers compare: the paper's DiT-S/2 and DiT-B/2
   (32×32×4 latents, 1000 classes, learned σ, batch 256) trained by
   - the recipe: bf16 autocast + torch.compile (default mode) + fused AdamW + a foreach EMA, a hand-written step;
   - the course's loop `course.lab.train.train`, eager and with `compile=True` (CUDA graphs), and with `--levers`
     each lever on DiT-B/2: no CUDA graphs, cuDNN or flash attention, channels-last patch embedding, batch 512.
   img/s are measured after warm-up (compiling); MFU = achieved FLOP/s ÷ the measured bf16 matmul peak, with the
   FLOPs of a training step (forward + backward, 2 per multiply-add) counted by `torch.utils.flop_counter`.
3. A small model, chapter 0's SmallUNet (766k parameters, 8×8, batch 128): the loop's steps/s eager, with CUDA
   graphs (`compile=True`) and with `compile="cudagraphs"` (no kernel generation), and what compiling costs:
   the numbers behind `AUTO_COMPILE_MIN_STEPS` in course/lab/train.py.

With `--json benchmarks/results/gpu.json` the figures are written with their provenance (date, device, CPU cores,
PyTorch, the command) as each configuration ends, so that a run cut short keeps what it finished
(`"complete": false`); chapter 7 shows that file when it exists.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the course
sys.path.insert(0, str(Path(__file__).resolve().parent))  # notebook_runner

from course.grader.exercises import reference_module
from course.lab.nets import SmallUNet
from course.lab.train import train

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("COURSE_SOLUTIONS", "1")  # the notebooks run the reference

dit = reference_module("dit")
DIFFUSION = reference_module("diffusion").Diffusion()
NOTEBOOK_BUDGET_S = 120  # a chapter's gpu profile, its studies at the budget of record included
TARGET = 1.15  # the loop ÷ the recipe, on DiT-B/2
LEVER_NOT_OFFERED = (
    "bf16 EMA / optimizer state: not offered. With EMA decay 0.9999 (lr 1e-4) a step moves the EMA by ~1e-4 of its "
    "value, below bf16's resolution (2^-8 ≈ 0.4 %), so a bf16 EMA would stand still; and torch's AdamW keeps its "
    "moments in the parameters' dtype (fp32 master weights), so bf16 moments need another optimizer.")


# --------------------------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, n: int, iters: int) -> float:
    """FLOP/s of a big bf16 matrix product: the ceiling MFU is measured against."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        a @ b
    sync(device)
    return 2 * n**3 * iters / (time.perf_counter() - start)


def step_flops(make_model, batch: int, shape: tuple[int, int, int]) -> float:
    """FLOPs of one training step's forward and backward (2 per multiply-add), counted on the meta device."""
    with torch.device("meta"):
        model = make_model()
        x = torch.randn(batch, *shape)
        t = torch.zeros(batch, dtype=torch.long)
        y = torch.zeros(batch, dtype=torch.long)
    counter = FlopCounterMode(display=False)
    with counter:
        model(x, t, y)[:, : shape[0]].square().mean().backward()
    return float(counter.get_total_flops())


def random_data(n: int, shape, num_classes: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, *shape, generator=g).to(device), torch.randint(0, num_classes, (n,), generator=g).to(device)


def recipe(make_model, *, batch: int, shape, num_classes: int, device, warmup: int, steps: int,
           compile: bool = True) -> dict:
    """The best known recipe, hand-written: bf16 autocast + torch.compile + fused AdamW + a foreach EMA."""
    torch.manual_seed(0)
    model = make_model().to(device).train()
    ema = copy.deepcopy(model).requires_grad_(False)
    ema_params, params = list(ema.parameters()), list(model.parameters())
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0, fused=device.type == "cuda")
    runner = torch.compile(model) if compile else model
    x, y = random_data(4 * batch, shape, num_classes, device)
    ab = DIFFUSION.alphas_cumprod.float().to(device)
    C = shape[0]

    def step():
        idx = torch.randint(0, len(x), (batch,), device=device)
        x0, yb = x[idx], y[idx]
        t = torch.randint(0, len(ab), (batch,), device=device)
        noise = torch.randn_like(x0)
        a = ab[t].view(-1, 1, 1, 1)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = F.mse_loss(runner(x_t, t, yb)[:, :C].float(), noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, params, 1 - 0.9999)
        return loss

    start = time.perf_counter()
    for _ in range(warmup):
        step()
    sync(device)
    warm = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        loss = step()
    sync(device)
    seconds = time.perf_counter() - start
    if not torch.isfinite(loss):
        raise RuntimeError(f"the recipe's loss is {loss.item()}")
    return {"img_s": steps * batch / seconds, "warmup_s": warm}


def loop(make_model, *, batch: int, shape, num_classes: int, device, warmup: int, steps: int, compile,
         sdpa=None, channels_last: bool = False, p_uncond: float = 0.0) -> dict:
    """The course's loop, `course.lab.train.train`, on random data; img/s between its first loss read after
    `warmup` steps and its last one."""
    torch.manual_seed(0)
    model = make_model()
    if channels_last:  # the patch embedding is the only convolution of a DiT
        model = model.to(memory_format=torch.channels_last)
    x, y = random_data(4 * batch, shape, num_classes, device)
    backends = contextlib.nullcontext()
    if sdpa is not None:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        backends = sdpa_kernel([{"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION}[sdpa]])
    with backends:
        result = train(model, x, y, steps=warmup + steps, batch_size=batch, lr=1e-4, p_uncond=p_uncond,
                       ema_decay=0.9999, diffusion=DIFFUSION, device=device, compile=compile, progress=False)
    timed = [(s, t) for s, t in result.timeline if s >= warmup]
    (s0, t0), (s1, t1) = timed[0], timed[-1]
    if s1 <= s0:
        raise RuntimeError(f"too few loss reads to time ({result.timeline})")
    return {"img_s": (s1 - s0) * batch / (t1 - t0), "steps_s": (s1 - s0) / (t1 - t0),
            "warmup_s": result.compile_seconds, "loss": result.losses[-1]}


def attempt(fn, **kwargs) -> dict:
    """Run one configuration; a configuration that fails here is reported, not fatal."""
    try:
        return fn(**kwargs)
    except Exception as e:  # noqa: BLE001
        return {"error": f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:160]}"}
    finally:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


# --------------------------------------------------------------------------------------------------------------
# The three parts
# --------------------------------------------------------------------------------------------------------------
def notebooks(chapters: list[str], profile: str) -> list[dict]:
    from bench_chapter import HEADLINE, headline
    from notebook_runner import run_notebook

    os.environ["COURSE_PROFILE"] = profile  # the kernels inherit it
    rows = []
    for path in sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb")):
        if chapters and path.name[:2] not in chapters:
            continue
        try:
            values, wall = run_notebook(path)
            row = {"notebook": path.name, "profile": values.get("profile"), "seconds": wall,
                   **{name: values[name] for name in HEADLINE if name in values}}
            verdict = "within" if wall <= NOTEBOOK_BUDGET_S else "OVER"
            print(f"  {path.name:<24} {wall:7.1f} s  ({verdict} the {NOTEBOOK_BUDGET_S} s budget); "
                  f"{headline(values)}", flush=True)
        except Exception as e:  # noqa: BLE001 - a failing notebook is reported with the others
            row = {"notebook": path.name, "error": f"{type(e).__name__}: {str(e)[-300:]}"}
            print(f"  {path.name:<24} failed: {row['error']}", flush=True)
        rows.append(row)
    return rows


def show(name: str, row: dict, flops: float | None = None, peak: float | None = None, per="img/s") -> None:
    if "error" in row:
        print(f"  {name:<44} did not run: {row['error']}", flush=True)
        return
    speed = row["img_s"] if per == "img/s" else row["steps_s"]
    line = f"  {name:<44} {speed:9,.0f} {per}"
    if flops and peak:
        achieved = row["img_s"] * flops
        row["tflops"], row["mfu"] = achieved / 1e12, achieved / peak
        line += f"  {achieved / 1e12:7.1f} TFLOP/s  MFU {achieved / peak:5.1%}"
    print(f"{line}  (warm-up {row['warmup_s']:.1f} s)", flush=True)


def throughput(args, device: torch.device, keep=lambda row: None) -> list[dict]:
    """DiT-S/2 and DiT-B/2 under the recipe and the loop; `keep(row)` is called as each configuration ends."""
    smoke = args.smoke
    peak = matmul_peak(device, n=512 if smoke else 8192, iters=3 if smoke else 50)
    print(f"bf16 matmul peak (measured): {peak / 1e12:.1f} TFLOP/s", flush=True)
    if smoke:
        def tiny():
            return dit.DiT(input_size=8, patch_size=2, in_channels=4, hidden_size=64, depth=2, num_heads=2,
                           num_classes=10)

        models, batch, shape, classes, warmup, steps = [("tiny DiT", tiny)], 8, (4, 8, 8), 10, 3, 3
    else:
        models = [(name, dit.DiT_models[name]) for name in ("DiT-S/2", "DiT-B/2")]
        batch, shape, classes, warmup, steps = 256, (4, 32, 32), 1000, 25, 100
    compile_on = not smoke or args.compile
    rows = []
    for name, make in models:
        flops = step_flops(make, batch, shape) / batch  # per image
        print(f"{name}, batch {batch}: {flops * batch / 1e12:.3f} TFLOP per training step", flush=True)
        common = {"batch": batch, "shape": shape, "num_classes": classes, "device": device, "warmup": warmup,
                  "steps": steps}
        recipe_label = "recipe (bf16 + compile + fused AdamW + EMA)" if compile_on else "recipe, not compiled"
        configs = [(recipe_label, recipe, {"compile": compile_on}),
                   ("loop, eager", loop, {"compile": False})]
        if compile_on:
            configs.append(("loop, compile=True (CUDA graphs on CUDA)", loop, {"compile": True}))
        if args.levers and (smoke or name == "DiT-B/2"):
            if compile_on:
                configs += [("loop, compile='default' (no CUDA graphs)", loop, {"compile": "default"})]
            if device.type == "cuda":
                configs += [("loop, CUDA graphs + cuDNN attention", loop, {"compile": True, "sdpa": "cudnn"}),
                            ("loop, CUDA graphs + flash attention", loop, {"compile": True, "sdpa": "flash"})]
            configs += [("loop, CUDA graphs + channels-last patches", loop, {"compile": compile_on,
                                                                                  "channels_last": True}),
                        (f"loop, CUDA graphs, batch {2 * batch}", loop, {"compile": compile_on, "batch": 2 * batch})]
        results = {}
        for label, fn, kwargs in configs:
            row = attempt(fn, make_model=make, **{**common, **kwargs})
            show(label, row, flops, peak)
            results[label] = row
            rows.append({"model": name, "config": label, **row})
            keep(rows[-1])
        base = results[configs[0][0]].get("img_s")
        best_label, best = max(((k, v["img_s"]) for k, v in results.items() if k.startswith("loop") and "img_s" in v),
                               key=lambda kv: kv[1], default=(None, None))
        if base and best:
            verdict = "smoke test: no verdict on" if smoke else "meets" if best / base >= TARGET else "misses"
            print(f"  → the loop's best ({best_label}) is {best / base:.2f}× the recipe on {name} "
                  f"({verdict} the {TARGET}× target{'' if name == 'DiT-B/2' else ', set for DiT-B/2'})", flush=True)
    if args.levers:
        print(f"  {LEVER_NOT_OFFERED}", flush=True)
    return rows


def small_model(args, device: torch.device, keep=lambda row: None) -> list[dict]:
    """Chapter 0's SmallUNet: steps/s of the loop, eager and with CUDA graphs, and the cost of compiling; `keep(row)`
    is called as each configuration ends."""
    channels, batch = ((8, 16), 8) if args.smoke else ((32, 64, 64), 128)
    warmup, steps = (3, 3) if args.smoke else (50, 1000)

    def make():
        return SmallUNet(in_channels=1, channels=channels, num_classes=10)

    common = {"make_model": make, "batch": batch, "shape": (1, 8, 8), "num_classes": 10, "device": device,
              "warmup": warmup, "steps": steps, "p_uncond": 0.1}
    configs = [("loop, eager", {"compile": False})]
    if not args.smoke or args.compile:
        configs += [("loop, compile=True (CUDA graphs on CUDA)", {"compile": True}),
                    ("loop, compile='cudagraphs' (no kernel generation)", {"compile": "cudagraphs"})]
    print(f"SmallUNet {'-'.join(map(str, channels))}, 8×8, batch {batch}:", flush=True)
    rows = []
    for label, kwargs in configs:
        if kwargs["compile"] == "cudagraphs" and device.type != "cuda":
            continue
        row = attempt(loop, **{**common, **kwargs})
        show(label, row, per="steps/s")
        rows.append({"model": "SmallUNet", "config": label, **row})
        keep(rows[-1])
    eager = rows[0].get("steps_s")
    for row in rows[1:]:
        if eager and row.get("steps_s", 0) > eager:  # compiling pays from this many steps on
            row["pays_after_steps"] = row["warmup_s"] / (1 / eager - 1 / row["steps_s"])
            print(f"  {row['config']}: compiling pays for runs of ≥ {row['pays_after_steps']:,.0f} steps", flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and a few steps; runs on the CPU too")
    parser.add_argument("--levers", action="store_true", help="also each speed lever of the loop on DiT-B/2")
    parser.add_argument("--no-notebooks", action="store_true", help="skip the notebooks")
    parser.add_argument("--chapters", nargs="*", default=None,
                        help="notebooks to run by number (default: all; with --smoke: 00)")
    parser.add_argument("--compile", action="store_true",
                        help="with --smoke: torch.compile too (minutes on a CPU; the GPU run always compiles)")
    parser.add_argument("--json", default=None, help="also write every row to this file")
    args = parser.parse_args()
    if not torch.cuda.is_available() and not args.smoke:
        print("bench_gpu.py measures a CUDA GPU and none is available here; nothing was measured. "
              "`--smoke` runs it on this machine with tiny sizes, to check that it works.")
        return 0
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 parts as the official recipe runs them
        torch.backends.cudnn.allow_tf32 = True
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({os.cpu_count()} cores)"
    print(f"torch {torch.__version__} on {name}{', smoke test (tiny sizes)' if args.smoke else ''}", flush=True)
    # What the run measured, with its provenance; written as each configuration ends, so that a run cut short (a
    # time limit, a crash) keeps what it finished. Chapter 7 shows its `rows` and `small_model` when it exists.
    record = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "device": name,
              "torch": torch.__version__, "cpu_cores": os.cpu_count(),
              "command": "python benchmarks/bench_gpu.py " + " ".join(sys.argv[1:]), "complete": False}

    def save() -> None:
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(record, indent=1))

    def keeper(part: str):
        record[part] = []

        def keep(row: dict) -> None:
            record[part].append(row)
            save()
        return keep

    parts = ["rows", "small_model"]
    if not args.no_notebooks:
        chapters = args.chapters if args.chapters is not None else (["00"] if args.smoke else [])
        profile = "ci" if args.smoke else "gpu"
        print(f"Chapter notebooks, profile `{profile}` (budget {NOTEBOOK_BUDGET_S} s each on one H100):", flush=True)
        parts.insert(0, "notebooks")
        record["notebooks"] = notebooks(chapters, profile)
        save()
    print("Training throughput on random data:", flush=True)
    throughput(args, device, keeper("rows"))
    small_model(args, device, keeper("small_model"))
    record["complete"] = True
    save()
    failed = [r for part in parts for r in record[part] if "error" in r]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
