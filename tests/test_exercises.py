"""Every exercise, whatever its chapter: the reference passes, the stub fails with its pointer, the lists agree."""
import re

import pytest

from course.grader.exercises import COURSE_DIR, SOLUTIONS_DIR, exercises, load_module, modules, stub_message
from course.grader.checks.kit import all_mistakes, hint_levels
from course.grader.grading import grade_mistake, registry, run_exercise

NAMES = exercises()


def test_every_exercise_has_a_check_and_every_check_an_exercise():
    assert sorted(registry()) == sorted(NAMES)


def test_syllabus_exercises_exist():
    """The SYLLABUS names are a public contract: each module that exists has at least those exercises."""
    syllabus = {
        "diffusion": "linear_betas cosine_betas q_sample ddpm_loss ddpm_step ddim_step cfg_eps",
        "layers": "timestep_embedding get_2d_sincos_pos_embed patchify unpatchify attention Attention.forward",
        "unet": "ResBlock.forward UNet.forward",
        "vit": "ViTBlock.forward ViTDenoiser.forward",
        "dit": "modulate LabelEmbedder.token_drop DiTBlock.forward FinalLayer.forward DiT.initialize_weights "
               "DiT.forward DiT.forward_with_cfg",
        "uvit": "UViTBlock.forward UViT.forward",
        "genvit": "GenViT.forward HybViT.classify HybViT.denoise hybrid_loss",
        "diffit": "window_partition window_reverse relative_position_index TMSA.forward DiffiTBlock.forward "
                  "DiffiTResBlock.forward DiffiT.forward",
        "latent": "reparameterize kl_loss latent_scale",
    }
    for module in modules():
        if module in syllabus:
            assert {f"{module}.{n}" for n in syllabus[module].split()} <= set(NAMES), module


@pytest.mark.parametrize("name", NAMES)
def test_reference_passes(name):
    result = run_exercise(name, SOLUTIONS_DIR)
    assert result.passed, result.message


@pytest.mark.parametrize("name", NAMES)
def test_stub_fails_with_pointer(name):
    result = run_exercise(name, COURSE_DIR)
    assert not result.passed
    assert result.message == stub_message(name)
    assert re.search(r"book/\d\d_\w+\.ipynb", result.message)


# ---------------------------------------------------------------------------------------------------------------
# Declared mistakes (course/grader/checks/kit.py): each fails its check, named in the message
# ---------------------------------------------------------------------------------------------------------------
MISTAKES = all_mistakes()


def test_every_exercise_declares_at_least_two_mistakes():
    counts = {name: sum(m.exercise == name for m in MISTAKES) for name in NAMES}
    assert all(n >= 2 for n in counts.values()), {k: v for k, v in counts.items() if v < 2}
    assert {m.exercise for m in MISTAKES} <= set(NAMES)


def test_a_mistake_that_fails_loudly_is_named_not_just_seen_to_raise():
    """A declared mistake that raises is named by its check (`name_a_raise`), so no mistake settles for "raised"."""
    assert not [str(m) for m in MISTAKES if (m.says or "").strip().lower() == "raised"]


@pytest.mark.parametrize("mistake", MISTAKES, ids=str)
def test_declared_mistake_fails_with_its_name(mistake):
    result = grade_mistake(mistake)
    assert not result.passed, f"{mistake} passed its check: {result.message}"
    assert mistake.fragment.lower() in result.message.lower(), result.message


# ---------------------------------------------------------------------------------------------------------------
# Hints (course/grader/checks/kit.py `hints`): levels on request; a failed check quotes at most the first
# ---------------------------------------------------------------------------------------------------------------
def _later_levels(name):
    return [level for level in hint_levels(name)[1:]]


def test_every_exercise_has_two_or_three_distinct_hint_levels():
    for name in NAMES:
        levels = hint_levels(name)
        assert 2 <= len(levels) <= 3, (name, levels)
        assert len(set(levels)) == len(levels), name


@pytest.mark.parametrize("mistake", MISTAKES, ids=str)
def test_a_declared_mistakes_message_carries_no_hint_beyond_level_one(mistake):
    message = grade_mistake(mistake).message
    for level in _later_levels(mistake.exercise):
        assert level not in message, (mistake, level)


def test_no_check_quotes_a_later_hint_level():
    """The recipe lives in the hints: no string in a check module (outside its `hints(...)` declarations) holds a
    level beyond the first, or the first half of one."""
    import ast

    from course.grader.exercises import ROOT

    later = [(name, level) for name in NAMES for level in _later_levels(name)]
    for module in modules():
        tree = ast.parse((ROOT / "course/grader/checks" / f"{module}.py").read_text())
        declared = {id(n) for call in ast.walk(tree) if isinstance(call, ast.Call)
                    and getattr(call.func, "id", None) == "hints" for n in ast.walk(call)}
        texts = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
                 and id(n) not in declared]
        for name, level in later:
            head = level[: max(30, len(level) // 2)]
            assert not any(head in t for t in texts), (module, name, level)


def test_no_learner_file_or_chapter_text_quotes_a_later_hint_level():
    """The text gives the contract, the hints the recipe: neither a learner's file (`course/<module>.py`, docstrings
    and given code) nor a chapter's prose holds a hint level beyond the first, or the first half of one."""
    import json

    from course.grader.exercises import ROOT

    def flat(text):
        return " ".join(text.split())

    texts = {f"course/{p.name}": flat(p.read_text()) for p in COURSE_DIR.glob("*.py")}
    for path in sorted((ROOT / "book").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        texts[f"book/{path.name}"] = flat(" ".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown"))
    for name in NAMES:
        for level in _later_levels(name):
            head = flat(level)[: max(30, len(flat(level)) // 2)]
            assert not [where for where, text in texts.items() if head in text], (name, level)


def test_a_generic_mismatch_quotes_level_one_and_where_to_get_more():
    impl = load_module("dit", SOLUTIONS_DIR, isolate="dit.modulate")
    impl.modulate = lambda x, shift, scale: x * (1 + scale.unsqueeze(1)) + 0.5 * shift.unsqueeze(1)
    message = run_exercise("dit.modulate", impl=impl).message
    levels = hint_levels("dit.modulate")
    assert "differs from the reference" in message and levels[0] in message, message
    assert 'hint("dit.modulate")' in message
    assert not any(level in message for level in levels[1:])


def test_hint_gives_the_next_level_each_call_and_remembers_it(tmp_path, monkeypatch):
    from course.grader.exercises import hint_text

    monkeypatch.setenv("COURSE_HINT_STATE", str(tmp_path / "hints.json"))
    levels = hint_levels("uvit.UViT.forward")
    n = len(levels)
    shown = [hint_text("uvit.UViT.forward") for _ in range(n + 1)]
    for k, text in enumerate(shown[:n], start=1):
        assert f"level {k} of {n}" in text
        assert " ".join(levels[k - 1].split()) in " ".join(text.split())
    assert f"level {n} of {n}" in shown[n], "the last level repeats once reached"
    assert "level 1 of" in hint_text("uvit.UViTBlock.forward"), "levels are remembered per exercise"
    assert f"level 1 of {n}" in hint_text("uvit.UViT.forward", level=1)
    hint_text("uvit.UViT.forward", reset=True)
    assert f"level 1 of {n}" in hint_text("uvit.UViT.forward")
    with pytest.raises(KeyError, match="did you mean"):
        hint_text("uvit.UViT.forwad")


def test_hint_command_line(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "COURSE_HINT_STATE": str(tmp_path / "hints.json")}
    run = [sys.executable, "-m", "course", "hint", "diffit.TMSA.forward"]
    first = subprocess.run(run, capture_output=True, text=True, env=env, check=True).stdout
    second = subprocess.run(run, capture_output=True, text=True, env=env, check=True).stdout
    assert "level 1 of" in first and "level 2 of" in second
    bad = subprocess.run(run[:-1] + ["nope.x"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "unknown exercise" in bad.stderr


def test_an_exception_in_the_learners_code_names_the_exercise_the_line_and_the_shapes(tmp_path):
    source = (SOLUTIONS_DIR / "uvit.py").read_text()
    old = "x = block(x, skips.pop())  # last in, first out"
    assert old in source
    (tmp_path / "uvit.py").write_text(source.replace(old, "x = block(x, skips.pop()[:, 1:])"))
    message = run_exercise("uvit.UViT.forward", tmp_path).message
    assert "uvit.UViT.forward" in message and "raised RuntimeError" in message, message
    line = source[: source.index(old)].count("\n") + 1
    assert f"uvit.py line {line}" in message and "skips.pop()[:, 1:]" in message, message
    assert re.search(r"x \(\d+, \d+, \d+\)", message), message


# ---------------------------------------------------------------------------------------------------------------
# Feedback that locates the fault: wrong answers no declared mistake covers, one or more per exercise that composes
# given submodules (and chapter 6's pipeline)
# ---------------------------------------------------------------------------------------------------------------
LOCATED = [  # (module, exercise, the reference's line, a plausible wrong line, what the message must say)
    ("layers", "layers.Attention.forward", "out = out.transpose(1, 2).reshape(B, N, D)  # (B, N, H * d)",
     "out = out.permute(0, 2, 3, 1).reshape(B, N, D)", "the input of `proj`. Look at what proj reads"),
    ("unet", "unet.ResBlock.forward",
     "h = h + self.temb_proj(F.silu(emb))[:, :, None, None]  # (B, out, 1, 1) broadcast over pixels",
     "h = h + self.temb_proj(F.relu(emb))[:, :, None, None]", "the input of `temb_proj`"),
    ("unet", "unet.UNet.forward", "h = torch.cat([h, skips.pop()], dim=1)", "h = torch.cat([skips.pop(), h], dim=1)",
     "the `x` argument of `up.0.0`. Look at the long skips"),
    ("unet", "unet.UNet.forward", "return self.conv_out(F.silu(self.norm_out(h)))",
     "return self.conv_out(self.norm_out(F.silu(h)))", "the input of `norm_out`"),
    ("vit", "vit.ViTBlock.forward", "x = x + self.mlp(self.norm2(x))  # (B, N, D)", "x = x + self.mlp(self.norm1(x))",
     "`norm2` is never called"),
    ("vit", "vit.ViTDenoiser.forward", "tokens = self.x_embedder(x) + self.pos_embed_for(H // p, W // p)  # (B, N, D)",
     "tokens = self.x_embedder(x) + self.pos_embed_for(W // p, H // p)", "the input of `blocks.0`"),
    ("dit", "dit.DiTBlock.forward",
     "x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))  # (B, N, D)",
     "x = x + gate_msa.unsqueeze(1) * self.attn(self.norm1(x))", "the input of `attn`"),
    ("dit", "dit.FinalLayer.forward", "x = modulate(self.norm_final(x), shift, scale)  # (B, N, D)",
     "x = self.norm_final(modulate(x, shift, scale))", "the input of `norm_final`"),
    ("dit", "dit.DiT.forward", "x = self.final_layer(x, c)  # (B, N, p * p * C_out)", "x = self.final_layer(x, t)",
     "the `c` argument of `final_layer`"),
    ("genvit", "genvit.GenViT.forward", "h = torch.cat([cls, tokens], dim=1) + self.pos_embedding  # (B, N+1, D)",
     "h = torch.cat([cls, tokens + self.pos_embedding[:, 1:]], dim=1)", "the input of `blocks.0.norm1`"),
    ("genvit", "genvit.HybViT.classify", "return self.mlp_head(tokens[:, 0])  # (B, num_classes)",
     "return self.mlp_head(tokens[:, 1:].mean(1))", "the input of `mlp_head`"),
    ("genvit", "genvit.HybViT.denoise", "return GenViT.forward(self, x_t, t)",
     "return GenViT.forward(self, x_t, t + 1)", "the input of `time_mlp`"),
    ("latent", "latent.sample_images",
     "return autoencoder.decode(z / scale).clamp(-1, 1)  # back to the autoencoder's units, then pixels",
     "return autoencoder.decode(z * latent_scale(z)).clamp(-1, 1)", "the latents given to autoencoder.decode"),
    ("latent", "latent.sample_images",
     "z = diffusion.sample(model, shape, y, steps=steps, w=w, clip=False, generator=generator)  # scaled latents",
     "z = diffusion.sample(model, shape, y, steps=20, w=w, clip=False, generator=generator)",
     "diffusion.sample is called with steps=20"),
    ("diffusion", "diffusion.ddpm_loss", "x_t = q_sample(x0, t, noise, alphas_cumprod)",
     "x_t = q_sample(x0, t - 1, noise, alphas_cumprod)", "the image given to the model"),
    ("genvit", "genvit.hybrid_loss", "eps = model.denoise(x_t, t)", "eps = model.denoise(x_t, t / 1000)",
     "the input of model.denoise"),
    ("diffit", "diffit.DiffiTBlock.forward", "x = x + self.attn(self.norm1(x), temb)  # (B, H, W, C)",
     "x = self.norm1(x); x = x + self.attn(x, temb)", "the input of `norm2`"),
    ("diffit", "diffit.DiffiTResBlock.forward", "return h + self.skip(x)  # (B, C_out, H, W)",
     "return h + self.skip(h)", "the input of `skip`"),
    ("uvit", "uvit.UViTBlock.forward", "x = x + self.mlp(self.norm2(x))  # (B, L, D)",
     "x = x + self.mlp(self.norm1(x))", "`norm2` is never called"),
    ("uvit", "uvit.UViT.forward", "x = block(x, skips.pop())  # last in, first out", "x = block(skips.pop(), x)",
     "the `x` argument of `out_blocks.0`"),
    ("uvit", "uvit.UViT.forward", "x = self.decoder_pred(self.norm(x))  # (B, extras + N, p*p*C)",
     "x = self.decoder_pred(x)", "`norm` is never called"),
    ("diffit", "diffit.TMSA.forward", "attn = self.softmax(attn + bias.view(N, N, heads).permute(2, 0, 1))",
     "attn = self.softmax(attn + bias.view(heads, N, N))", "the input of `softmax`. Look at the logits"),
    ("diffit", "diffit.TMSA.forward", "out = (attn @ v).transpose(1, 2).reshape(Bw, N, C)",
     "out = (attn @ v).reshape(Bw, N, C)", "the input of `proj`. Look at merging the heads"),
    ("diffit", "diffit.DiffiT.forward", "h = torch.cat([up(h), skips.pop()], dim=1)",
     "h = torch.cat([up(h), skips.pop(0)], dim=1)", "skips.pop(0)"),
]


@pytest.mark.parametrize("module, name, old, new, says", LOCATED, ids=[f"{c[1]}: {c[3]}" for c in LOCATED])
def test_a_wrong_step_is_located(tmp_path, module, name, old, new, says):
    source = (SOLUTIONS_DIR / f"{module}.py").read_text()
    assert old in source
    (tmp_path / f"{module}.py").write_text(source.replace(old, new))
    result = run_exercise(name, tmp_path)
    assert not result.passed and says in result.message, result.message
    assert not any(level in result.message for level in hint_levels(name)[1:])
    assert len(result.message) <= 500, "the grade table keeps 500 characters of a message"


# Exercises whose check compares no composition of given submodules (each says why).
NOT_COMPOSED = {
    "dit.LabelEmbedder.token_drop": "its check counts the dropped labels; there are no submodules to watch",
    "dit.DiT.initialize_weights": "its check names each tensor whose initial values are wrong",
    "dit.DiT.forward_with_cfg": "it composes the learner's own forward; its check names the declared mistakes",
}


def test_every_exercise_that_composes_given_submodules_locates_a_wrong_step():
    """A method of a module (a forward, a head) that calls given layers has at least one wrong answer above, no
    declared mistake, whose message names the step that first differs."""
    import torch.nn as nn

    from course.grader.exercises import reference_module, resolve

    composed = set()
    for name in NAMES:
        module, qualname = name.split(".", 1)
        owner = resolve(reference_module(module), qualname.rsplit(".", 1)[0]) if "." in qualname else None
        if isinstance(owner, type) and issubclass(owner, nn.Module):
            composed.add(name)
    composed |= {"latent.sample_images"}  # the latent pipeline: the sampler's arguments, the decoder's input
    located = {case[1] for case in LOCATED}
    assert composed - set(NOT_COMPOSED) <= located, sorted(composed - set(NOT_COMPOSED) - located)
    assert set(NOT_COMPOSED) <= composed


def test_tmsa_must_use_self_softmax_for_the_chapters_time_bias_variant(tmp_path):
    """With torch.softmax, TMSA alone matches the reference, but the given TimeBiasAttention loses its time input."""
    source = (SOLUTIONS_DIR / "diffit.py").read_text()
    old = "attn = self.softmax(attn + bias.view(N, N, heads).permute(2, 0, 1))"
    (tmp_path / "diffit.py").write_text(source.replace(old, old.replace("self.softmax(", "torch.softmax(")[:-1]
                                                       + ", dim=-1)"))
    result = run_exercise("diffit.TMSA.forward", tmp_path)
    assert not result.passed and "self.softmax" in result.message, result.message


# ---------------------------------------------------------------------------------------------------------------
# Outside a notebook, an earlier chapter's unfinished exercises borrow the reference too (as setup() does)
# ---------------------------------------------------------------------------------------------------------------
def test_importing_a_later_chapter_borrows_the_reference_for_earlier_stubs_and_says_so_once(tmp_path):
    import os
    import shutil
    import subprocess
    import sys

    shutil.copytree(COURSE_DIR, tmp_path / "course", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(SOLUTIONS_DIR, tmp_path / "solutions", ignore=shutil.ignore_patterns("__pycache__"))
    code = ("import torch\nimport course.uvit as u\nimport course.dit\n"
            "m = u.create_uvit()\nprint(tuple(m.patch_embed(torch.zeros(1, 1, 8, 8)).shape))\n"
            "from course.layers import timestep_embedding\n"
            "print(tuple(timestep_embedding(torch.tensor([3]), 6).shape))\n"
            "try:\n    m(torch.zeros(1, 1, 8, 8), torch.tensor([3]))\nexcept NotImplementedError as e:\n    print(e)\n")
    env = {k: v for k, v in os.environ.items() if k != "COURSE_SOLUTIONS"}
    env["PYTHONPATH"] = str(tmp_path)
    learner = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert learner.returncode == 0, learner.stderr
    assert "(1, 16, 64)" in learner.stdout and "(1, 6)" in learner.stdout
    assert "Exercise `uvit.UViT.forward` is not done yet" in learner.stdout, "the chapter's own exercise stays yours"
    said = [line for line in learner.stderr.splitlines() if "reference stands in for" in line]
    assert len(said) == 1 and "layers.timestep_embedding" in said[0] and "dit.DiTBlock.forward" in said[0], said
    assert "uvit." not in said[0]
    reference = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                               env={**env, "COURSE_SOLUTIONS": "1"})
    assert reference.returncode == 0 and "stands in" not in reference.stderr + reference.stdout, reference.stderr
