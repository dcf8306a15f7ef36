"""Looking inside trained models: attention probabilities for plots and views (infrastructure, not an exercise).

The chapters' `Attention` modules compute attention in one fused call (`scaled_dot_product_attention`), which never
materialises the probabilities; the figures need them, so they are recomputed here from q and k."""
from __future__ import annotations

import math

import torch


def attention_probs(q: torch.Tensor, k: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(q kᵀ / √d + bias) over the keys: (..., N, d), (..., M, d) -> (..., N, M)."""
    scores = torch.einsum("...nd,...md->...nm", q, k) / math.sqrt(q.shape[-1])
    if bias is not None:
        scores = scores + bias
    return scores.softmax(dim=-1)
