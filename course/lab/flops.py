"""Counting the FLOPs of a denoiser: one function for the whole course.

    from course.lab.flops import forward_flops, gflops
    forward_flops(model, torch.zeros(1, 1, 8, 8), torch.zeros(1, dtype=torch.long))   # an int
    forward_flops(model, (1, 1, 8, 8))                                                # the same, from a shape
    gflops(model, (1, 4, 32, 32), y=torch.zeros(1, dtype=torch.long))                 # in units of 1e9

The count is PyTorch's own, `torch.utils.flop_counter.FlopCounterMode`, which counts **2 FLOPs per multiply-add**
(a matrix product of (m, k) by (k, n) is 2·m·k·n FLOPs) and counts only the matrix products and convolutions
(plus attention); element-wise work (norms, activations, additions) is not counted. Papers differ here: the DiT
paper's "Gflops" count multiply-adds, i.e. half of this figure (DiT-XL/2 at 32×32×4 latents: 118.6 Gflops in the
paper, about 237 here).

The forward pass runs in eval mode and without gradients, on a copy of the model on PyTorch's `meta` device (shapes
only, no arithmetic, no memory), so even a large model is counted in a blink; the caller's model is not touched.
On `meta`, `F.scaled_dot_product_attention` is counted (2 products of N×N×d per head); on the CPU its fused kernel
is not seen by the counter, which would leave attention out. A model whose forward cannot run on `meta` is counted
on a copy on its own device instead.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["forward_flops", "gflops", "training_step_flops"]


def _inputs(x, t, y, device):
    """Tensors for x (a tensor or a shape), t (zeros when not given) and y, on `device` (None: where they are)."""
    if not isinstance(x, Tensor):
        x = torch.zeros(tuple(x))
    if t is None:
        t = torch.zeros(x.shape[0], dtype=torch.long)
    move = (lambda a: a if a is None else torch.zeros_like(a, device=device)) if device else (lambda a: a)
    return move(x), move(t), move(y)


def _count(model: nn.Module, x, t, y, backward: bool) -> int:
    def run(m, inputs):
        counter = FlopCounterMode(display=False)
        with counter, torch.set_grad_enabled(backward):
            out = m(*inputs)
            if backward:
                out.float().square().mean().backward()
        return int(counter.get_total_flops())

    on_meta = next(model.parameters(), torch.empty(0)).device.type == "meta"
    try:
        meta = model if on_meta else copy.deepcopy(model).to("meta")
        was_training = meta.training
        meta.eval()
        try:
            return run(meta, _inputs(x, t, y, "meta"))
        finally:
            meta.train(was_training)
    except (NotImplementedError, RuntimeError):
        if on_meta:
            raise
    # A forward that needs real values (e.g. `.item()`): count it on a copy, on the real inputs' device.
    real = copy.deepcopy(model).eval()
    device = next(real.parameters(), torch.empty(0)).device
    x, t, y = _inputs(x, t, y, None)
    return run(real, (x.to(device), t.to(device), None if y is None else y.to(device)))


def forward_flops(model: nn.Module, x: Tensor | Sequence[int], t: Tensor | None = None,
                  y: Tensor | None = None) -> int:
    """FLOPs (2 per multiply-add) of one forward pass `model(x, t, y)` of a denoiser, for the whole batch of `x`.

    `x` is an example input or just its shape, e.g. (1, 1, 8, 8) for one 8×8 grey image (divide by the batch for
    a per-image figure); `t` defaults to timestep 0 for every image, `y` to None (the null class). Only shapes
    matter. Eval mode, no gradients; the model itself is left as it was."""
    return _count(model, x, t, y, backward=False)


def gflops(model: nn.Module, x: Tensor | Sequence[int], t: Tensor | None = None, y: Tensor | None = None) -> float:
    """`forward_flops` in GFLOP (1e9 FLOPs, still 2 per multiply-add)."""
    return forward_flops(model, x, t, y) / 1e9


def training_step_flops(model: nn.Module, x: Tensor | Sequence[int], t: Tensor | None = None,
                        y: Tensor | None = None) -> int:
    """FLOPs (2 per multiply-add) of one forward and backward pass on the batch `x` (a training step without the
    optimizer), the backward from the mean square of the output, as a diffusion loss does. Eval mode (no dropout
    masks), on the meta device like `forward_flops`. The backward costs about twice the forward (the gradients
    of each layer's input and of its weights), less for the first layer, whose input needs no gradient."""
    return _count(model, x, t, y, backward=True)
