"""Every exercise, whatever its chapter: the reference passes, the stub fails with its pointer, the lists agree."""
import re

import pytest

from course.grader.exercises import COURSE_DIR, SOLUTIONS_DIR, exercises, modules, stub_message
from course.grader.checks.kit import all_mistakes
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


@pytest.mark.parametrize("mistake", MISTAKES, ids=str)
def test_declared_mistake_fails_with_its_name(mistake):
    result = grade_mistake(mistake)
    assert not result.passed, f"{mistake} passed its check: {result.message}"
    assert mistake.fragment.lower() in result.message.lower(), result.message
