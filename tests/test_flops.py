"""course/lab/flops.py: the one FLOP counter of the course (2 per multiply-add, attention included)."""
import torch
from torch import nn

from course.lab.flops import forward_flops, gflops, training_step_flops


class Tiny(nn.Module):
    """One linear layer of 4 → 3 per pixel-row: 2·4·3 FLOPs per row."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.drop = nn.Dropout(0.5)

    def forward(self, x, t, y=None):
        return self.drop(self.lin(x))


def test_counts_two_per_multiply_add_and_leaves_the_model_alone():
    model = Tiny().train()
    x, t = torch.randn(2, 1, 5, 4), torch.zeros(2, dtype=torch.long)
    assert forward_flops(model, x, t) == 2 * 4 * 3 * (2 * 5)
    assert forward_flops(model, (2, 1, 5, 4)) == forward_flops(model, x, t, None)
    assert gflops(model, x, t) == forward_flops(model, x, t) / 1e9
    assert model.training and model.lin.weight.device.type == "cpu" and model.lin.weight.grad is None
    # backward of the only layer: the weight gradient alone (the input needs none), as much as the forward
    assert training_step_flops(model, x, t) == 2 * forward_flops(model, x, t)


def test_attention_is_counted():
    class Attn(nn.Module):
        def forward(self, x, t, y=None):  # x: (B, H, N, d)
            return torch.nn.functional.scaled_dot_product_attention(x, x, x)

    model = Attn()
    model.register_parameter("w", nn.Parameter(torch.zeros(1)))
    B, H, N, d = 1, 2, 16, 8
    assert forward_flops(model, (B, H, N, d)) == 2 * (2 * B * H * N * N * d)
