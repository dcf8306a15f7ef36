"""The learner's modules are generated from the reference and must not drift from it."""
import pytest

from course.exercises import COURSE_DIR, SOLUTIONS_DIR, find_blocks, generate, is_stub, modules, student_source
from course.exercises import reference_module, resolve


def test_course_is_in_sync_with_solutions():
    assert generate(check_only=True) == [], "run `python -m course generate`"


@pytest.mark.parametrize("module", modules())
def test_generated_module_has_no_solution_code(module):
    source = (SOLUTIONS_DIR / f"{module}.py").read_text()
    student = (COURSE_DIR / f"{module}.py").read_text()
    assert "# BEGIN SOLUTION" not in student and "# END SOLUTION" not in student
    for block in find_blocks(source, module):
        body = source.splitlines()[block.begin: block.end - 1]
        assert body, f"{block.exercise}: empty solution block"
        assert f"Exercise `{block.exercise}` is not done yet" in student


def test_stub_detection_sees_stubs_and_not_solutions():
    for module in modules():
        ref = reference_module(module)
        for block in find_blocks((SOLUTIONS_DIR / f"{module}.py").read_text(), module):
            assert not is_stub(resolve(ref, block.qualname)), block.exercise


def test_markers_must_pair_and_sit_in_functions():
    with pytest.raises(ValueError, match="without"):
        find_blocks("def f():\n    # BEGIN SOLUTION\n    return 1\n", "m")
    with pytest.raises(ValueError, match="inside a function"):
        find_blocks("# BEGIN SOLUTION\nx = 1\n# END SOLUTION\n", "m")
    with pytest.raises(ValueError, match="inside another"):
        find_blocks("def f():\n    # BEGIN SOLUTION\n    # BEGIN SOLUTION\n    return 1\n    # END SOLUTION\n", "m")


def test_stub_keeps_signature_docstring_and_indentation():
    src = ('class A:\n    def f(self, x):\n        """Doc."""\n        # BEGIN SOLUTION\n        return x\n'
           '        # END SOLUTION\n')
    out = student_source("diffusion", src)
    namespace = {}
    exec(out, namespace)
    with pytest.raises(NotImplementedError, match="diffusion.A.f"):
        namespace["A"]().f(1)
    assert '"""Doc."""' in out
