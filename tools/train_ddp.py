"""Train a course model on several GPUs (or CPU processes) with the course's loop and DistributedDataParallel.

    torchrun --nproc_per_node 8 tools/train_ddp.py --model DiT-S/2 --steps 20000 --batch-size 1024 \\
        --checkpoint checkpoints/dit-s2.pt
    torchrun --nproc_per_node 2 tools/train_ddp.py --model unet --steps 500          # CPUs: gloo

`torchrun` starts one process per GPU and runs this script in each; `course.lab.train.train` sees the process group
and splits every global batch of `--batch-size` across the processes (each draws the whole batch's random numbers
and keeps its rows, so the losses do not depend on the number of processes), averages the gradients (DDP), shows
one progress bar and writes the checkpoint from process 0. Run it again with the same `--checkpoint` to resume.
Without torchrun it trains in one process. Data: the digits (8×8×1) or the procedural shapes (`--data shapes`).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from course.lab.config import device as default_device
from course.lab.data import digits, shapes
from course.lab.train import train


def build_model(args, in_channels: int, size: int) -> torch.nn.Module:
    torch.manual_seed(args.seed)  # every process builds the same weights (DDP copies process 0's anyway)
    if args.model == "unet":
        from course.lab.nets import SmallUNet

        return SmallUNet(in_channels=in_channels, channels=tuple(args.channels), num_classes=10,
                         emb_dim=args.emb_dim)
    from course.dit import create_dit

    return create_dit(args.model, input_size=size, in_channels=in_channels, num_classes=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="unet", help="'unet' (SmallUNet) or a DiT name: DiT-Ti/2, DiT-S/2, ...")
    parser.add_argument("--channels", type=int, nargs="+", default=[32, 64, 64], help="SmallUNet's channels")
    parser.add_argument("--emb-dim", type=int, default=128, help="SmallUNet's embedding width")
    parser.add_argument("--data", choices=["digits", "shapes"], default="digits")
    parser.add_argument("--size", type=int, default=None, help="image size (digits: 8, shapes: 16)")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=128, help="the global batch, split across processes")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--p-uncond", type=float, default=None,
                        help="label dropout in the loop (default 0.1; 0 for a DiT, which drops labels itself)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", default=None, help="resumed from when it exists")
    parser.add_argument("--checkpoint-every", type=int, default=None)
    parser.add_argument("--compile", choices=["auto", "on", "off"], default="auto")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--out", default=None, help="a folder: each process writes rank<r>.json (losses, EMA sums)")
    args = parser.parse_args(argv)

    torchrun = "WORLD_SIZE" in os.environ and "RANK" in os.environ
    dev = default_device()
    if torchrun:
        if dev.type == "cuda":
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(dev)
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    rank = dist.get_rank() if torchrun else 0

    size = args.size or (8 if args.data == "digits" else 16)
    x, y = digits("train", size=size) if args.data == "digits" else shapes(2000, size=size, seed=args.seed)
    model = build_model(args, x.shape[1], size)
    p_uncond = args.p_uncond if args.p_uncond is not None else (0.1 if args.model == "unet" else 0.0)
    result = train(model, x, y, steps=args.steps, batch_size=args.batch_size, lr=args.lr, p_uncond=p_uncond,
                   seed=args.seed, device=dev, checkpoint=args.checkpoint, checkpoint_every=args.checkpoint_every,
                   compile={"auto": None, "on": True, "off": False}[args.compile], progress=not args.no_progress,
                   desc=f"{args.model} on {args.data}")
    if rank == 0:
        print(f"{result}; {result.steps_per_second * args.batch_size:,.0f} images/s", flush=True)
    if args.out:
        ema = torch.cat([p.detach().float().flatten().cpu() for p in result.ema.parameters()])
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"rank{rank}.json").write_text(json.dumps(
            {"losses": result.losses, "steps": result.steps, "ema_sum": ema.double().sum().item(),
             "ema_sq": ema.double().square().sum().item()}))
    if torchrun:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
