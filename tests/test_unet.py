"""The `unet` reference has the promised API and cost (its declared mistakes are in course/grader/checks/unet.py and are
graded by tests/test_exercises.py)."""
import torch

from course.grader.exercises import reference_module
from course.lab.flops import forward_flops


def test_unet_shapes_conditioning_and_sizes():
    unet = reference_module("unet")
    torch.manual_seed(0)
    model = unet.UNet()
    assert model.num_classes == 10 and model.label_embed.num_embeddings == 11
    with torch.no_grad():
        for shape in ((3, 1, 8, 8), (1, 1, 16, 12), (2, 1, 32, 32)):  # any size divisible by 4
            x = torch.randn(shape)
            t = torch.randint(0, 1000, (shape[0],))
            out = model(x, t, torch.randint(0, 10, (shape[0],)))
            assert out.shape == x.shape and torch.isfinite(out).all()
        x, t = torch.randn(2, 1, 8, 8), torch.tensor([10, 900])
        assert torch.allclose(model(x, t, None), model(x, t, torch.tensor([10, 10])))
        assert not torch.allclose(model(x, t, torch.tensor([1, 1])), model(x, t, torch.tensor([7, 7])))


def test_unet_is_cheap_at_8x8():
    """The chapter's default: under a million parameters and about 20 MFLOP per 8×8 image (2 per multiply-add)."""
    model = reference_module("unet").UNet()
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    assert 10e6 < forward_flops(model, (1, 1, 8, 8)) < 40e6
