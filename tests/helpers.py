"""Helpers for the tests of each chapter: grade a plausible wrong version of one exercise."""
from __future__ import annotations

import tempfile
from pathlib import Path

from course.exercises import SOLUTIONS_DIR, _set, load_module
from course.grading import Result, run_exercise


def grade_replaced(name: str, replacement) -> Result:
    """Grade `name` with the reference's block swapped for `replacement` (a function, or a method taking self)."""
    module, qualname = name.split(".", 1)
    impl = load_module(module, SOLUTIONS_DIR, isolate=name)
    _set(impl, qualname, replacement)
    return run_exercise(name, impl=impl)


def grade_edited(name: str, old: str, new: str, count: int = 1) -> Result:
    """Grade `name` on a copy of the reference whose source has `old` replaced by `new` (a realistic typo).

    Fails the test if `old` does not occur exactly `count` times, so an edit cannot silently stop applying.
    """
    module = name.split(".")[0]
    source = (SOLUTIONS_DIR / f"{module}.py").read_text()
    assert source.count(old) == count, f"{old!r} occurs {source.count(old)} times in solutions/{module}.py"
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / f"{module}.py").write_text(source.replace(old, new))
        return run_exercise(name, tmp)


def assert_fails(result: Result, *fragments: str) -> None:
    """The check failed, and its message mentions each fragment (case-insensitive)."""
    assert not result.passed, f"{result.exercise} should fail but passed: {result.message}"
    for fragment in fragments:
        assert fragment.lower() in result.message.lower(), f"{fragment!r} not in: {result.message}"
