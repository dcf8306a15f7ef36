"""Plausible wrong versions of the `vit` exercises fail their checks; the reference model has the promised API."""
import torch

from course.exercises import reference_module
from tests.helpers import assert_fails, grade_edited, grade_replaced


# --- ViTBlock.forward -------------------------------------------------------------------------------------------
def test_vit_block_post_norm():
    def post_norm(self, x):
        x = self.norm1(x + self.attn(x))
        return self.norm2(x + self.mlp(x))

    assert_fails(grade_replaced("vit.ViTBlock.forward", post_norm), "post-norm")


def test_vit_block_missing_attention_residual():
    result = grade_edited("vit.ViTBlock.forward", "x = x + self.attn(self.norm1(x))", "x = self.attn(self.norm1(x))")
    assert_fails(result, "residual of the attention is missing")


def test_vit_block_missing_mlp_residual():
    result = grade_edited("vit.ViTBlock.forward", "x = x + self.mlp(self.norm2(x))", "x = self.mlp(self.norm2(x))")
    assert_fails(result, "residual of the MLP is missing")


def test_vit_block_norms_swapped():
    result = grade_edited("vit.ViTBlock.forward", "self.attn(self.norm1(x))", "self.attn(self.norm2(x))")
    assert_fails(result, "differs")  # norm2 for both: not one of the named mistakes, still wrong


def test_vit_block_parallel():
    def parallel(self, x):
        return x + self.attn(self.norm1(x)) + self.mlp(self.norm2(x))

    assert_fails(grade_replaced("vit.ViTBlock.forward", parallel), "parallel block")


# --- ViTDenoiser.forward ----------------------------------------------------------------------------------------
def test_vit_without_position_embedding():
    result = grade_edited("vit.ViTDenoiser.forward", "self.x_embedder(x) + self.pos_embed_for(H // p, W // p)",
                          "self.x_embedder(x)")
    assert_fails(result, "position embedding is missing")


def test_vit_stored_position_embedding_only():
    """Adding self.pos_embed works at 8×8 but not for another input size."""
    result = grade_edited("vit.ViTDenoiser.forward", "self.pos_embed_for(H // p, W // p)", "self.pos_embed")
    assert_fails(result, "raised")


def test_vit_ignores_class():
    result = grade_edited("vit.ViTDenoiser.forward", "c = self.t_embedder(t) + self.y_embedder(y)",
                          "c = self.t_embedder(t)")
    assert_fails(result, "class label is ignored")


def test_vit_without_final_norm():
    result = grade_edited("vit.ViTDenoiser.forward", "out = self.head(self.norm(tokens))", "out = self.head(tokens)")
    assert_fails(result, "final LayerNorm")


def test_vit_unpatchify_with_h_and_w_swapped():
    result = grade_edited("vit.ViTDenoiser.forward", "return unpatchify(out, p, (H // p, W // p))",
                          "return unpatchify(out, p, (W // p, H // p))")
    assert_fails(result, "(2, 1, 4, 6)", "should have shape")


def test_vit_only_first_block():
    result = grade_edited("vit.ViTDenoiser.forward", "for block in self.blocks:", "for block in self.blocks[:1]:")
    assert_fails(result, "only the first block")


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
