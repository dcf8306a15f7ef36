"""The learner's modules are generated from the reference and must not drift from it."""
import ast
import textwrap

import pytest

from course.grader.exercises import COURSE_DIR, SOLUTIONS_DIR, find_blocks, generate, is_stub, modules, student_source
from course.grader.exercises import reference_module, resolve


def test_course_top_level_holds_only_the_learners_files():
    """A learner told to fill in `course/<module>.py` finds their files at a glance: the exercise modules and the two
    entry files at the top, what the chapters use in `course/lab/`, the grader in `course/grader/`."""
    top = sorted(p.name for p in COURSE_DIR.glob("*.py"))
    assert top == sorted([f"{m}.py" for m in modules()] + ["__init__.py", "__main__.py"])
    folders = sorted(p.name for p in COURSE_DIR.iterdir() if p.is_dir() and p.name != "__pycache__")
    assert folders == ["grader", "lab"]


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


def _statements(node) -> list[list[str]]:
    """Every statement list (function bodies, loop bodies, branches) in a tree, each statement as its AST dump."""
    out = []
    for n in ast.walk(node):
        for field in ("body", "orelse", "finalbody"):
            stmts = getattr(n, field, None)
            if isinstance(stmts, list) and stmts and isinstance(stmts[0], ast.stmt):
                out.append([(ast.dump(s), s) for s in stmts])
    return out


def _trivial(dump: str) -> bool:
    """`return x`, `B, C, H, W = x.shape`, `p = self.patch_size`: no computation worth calling an answer."""
    return not any(op in dump for op in ("Call(", "BinOp(", "Subscript(", "Compare("))


@pytest.mark.parametrize("module", modules())
def test_no_solution_body_is_given_away_elsewhere_in_the_learners_file(module):
    """The generated file holds stubs where the answers were; given code beside them must not repeat an answer, of
    its own module or of any other (two statements in a row of a solution body, or a one-statement body, found
    anywhere else in the file): a later chapter's given code must not answer an earlier chapter's exercise."""
    given = _statements(ast.parse((COURSE_DIR / f"{module}.py").read_text()))
    leaks = []
    for other in modules():
        leaks += _leaks(other, given)
    assert not leaks, "given code repeats an exercise's answer:\n" + "\n".join(sorted(set(leaks)))


def _leaks(module: str, given) -> list[str]:
    source = (SOLUTIONS_DIR / f"{module}.py").read_text()
    lines = source.splitlines()
    leaks = []
    for block in find_blocks(source, module):
        body = [ast.dump(s) for s in ast.parse(textwrap.dedent("\n".join(lines[block.begin: block.end - 1]))).body]
        width = min(2, len(body))
        windows = {tuple(body[i: i + width]) for i in range(len(body) - width + 1)}
        windows = {w for w in windows if not all(_trivial(d) for d in w)}
        for stmts in given:
            dumps = [d for d, _ in stmts]
            for i in range(len(stmts) - width + 1):
                if tuple(dumps[i: i + width]) in windows:
                    leaks.append(f"{block.exercise}: `{ast.unparse(stmts[i][1])}` ...")
    return leaks

