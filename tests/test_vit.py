"""The `vit` reference has the promised API (its declared mistakes are tested in test_exercises.py)."""
import torch

from course.grader.exercises import reference_module


# --- the model itself -------------------------------------------------------------------------------------------
def test_vit_denoiser_api_and_zero_head():
    vit = reference_module("vit")
    torch.manual_seed(0)
    model = vit.ViTDenoiser()
    assert model.num_classes == 10 and model.y_embedder.num_embeddings == 11
    assert not model.pos_embed.requires_grad
    x, t = torch.randn(3, 1, 8, 8), torch.tensor([0, 500, 999])
    with torch.no_grad():
        assert torch.equal(model(x, t, None), torch.zeros_like(x)), "a fresh ViT denoiser should output zeros"
        torch.nn.init.normal_(model.head.weight, std=0.1)
        for shape in ((2, 1, 8, 8), (1, 1, 16, 16), (1, 1, 6, 10)):  # other sizes: pos_embed_for
            out = model(torch.randn(shape), torch.randint(0, 1000, (shape[0],)), None)
            assert out.shape == shape and torch.isfinite(out).all()
        assert not torch.allclose(model(x, t, torch.tensor([1, 1, 1])), model(x, t, torch.tensor([2, 2, 2])))
