"""Plausible wrong versions of the `unet` exercises fail their checks; the reference model has the promised API."""
import torch
import torch.nn.functional as F

from course.exercises import reference_module
from tests.helpers import assert_fails, grade_edited, grade_replaced


# --- ResBlock.forward -------------------------------------------------------------------------------------------
def test_resblock_without_shortcut():
    result = grade_edited("unet.ResBlock.forward", "return self.nin_shortcut(x) + h", "return h")
    assert_fails(result, "shortcut is missing")


def test_resblock_embedding_without_silu():
    result = grade_edited("unet.ResBlock.forward", "self.temb_proj(F.silu(emb))", "self.temb_proj(emb)")
    assert_fails(result, "without the SiLU")


def test_resblock_embedding_after_second_conv():
    def late(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.nin_shortcut(x) + h + self.temb_proj(F.silu(emb))[:, :, None, None]

    assert_fails(grade_replaced("unet.ResBlock.forward", late), "after the second convolution")


def test_resblock_silu_before_norm():
    result = grade_edited("unet.ResBlock.forward", "h = self.conv1(F.silu(self.norm1(x)))",
                          "h = self.conv1(self.norm1(F.silu(x)))")
    assert_fails(result, "SiLU comes before GroupNorm")


def test_resblock_dropout_misplaced():
    result = grade_edited("unet.ResBlock.forward", "h = self.conv2(self.dropout(F.silu(self.norm2(h))))",
                          "h = self.dropout(self.conv2(F.silu(self.norm2(h))))")
    assert_fails(result, "dropout")


def test_resblock_identity_shortcut_when_channels_change():
    result = grade_edited("unet.ResBlock.forward", "return self.nin_shortcut(x) + h", "return x + h")
    assert_fails(result, "raised")


# --- UNet.forward -----------------------------------------------------------------------------------------------
def test_unet_skips_added_instead_of_concatenated():
    result = grade_edited("unet.UNet.forward", "h = torch.cat([h, skips.pop()], dim=1)", "h = h + skips.pop()")
    assert_fails(result, "raised", "channels")


def test_unet_skips_in_the_wrong_order():
    result = grade_edited("unet.UNet.forward", "skips.pop()", "skips.pop(0)")
    assert_fails(result, "raised")


def test_unet_without_middle_attention():
    result = grade_edited("unet.UNet.forward", "self.mid_block2(self.mid_attn(self.mid_block1(h, emb)), emb)",
                          "self.mid_block2(self.mid_block1(h, emb), emb)")
    assert_fails(result, "self-attention in the middle is skipped")


def test_unet_ignores_class_label():
    result = grade_edited("unet.UNet.forward", "emb = self.embed(t, y)", "emb = self.time_embed(t)")
    assert_fails(result, "class label is ignored")


def test_unet_without_output_norm():
    result = grade_edited("unet.UNet.forward", "return self.conv_out(F.silu(self.norm_out(h)))",
                          "return self.conv_out(h)")
    assert_fails(result)


def test_unet_skip_taken_after_downsampling():
    result = grade_edited("unet.UNet.forward", "skips.append(h)  # (B, C_i, H / 2^i, W / 2^i)\n            h = downsample(h)",
                          "h = downsample(h)\n            skips.append(h)")
    assert_fails(result, "raised")


# --- the models themselves --------------------------------------------------------------------------------------
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
    """The chapter's default: under a million parameters and about 20 MFLOP per 8×8 image (counter convention)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = reference_module("unet").UNet()
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 1, 8, 8), torch.zeros(1, dtype=torch.long), None)
    assert 10e6 < counter.get_total_flops() < 40e6
