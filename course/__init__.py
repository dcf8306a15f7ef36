"""Diffusion Transformers from scratch: the learner's package.

The top level holds the learner's exercise modules (`diffusion`, `layers`, `unet`, `vit`, `dit`, ...), generated
from `solutions/` with their marked blocks left for the learner to write, and this file's short public surface
(`check`, `setup`, `hint`, `glue`, `show_exercise`). What the chapters use (data, training, metrics, plots,
widgets, ...) is in `course.lab`; the grader (the exercise registry, grading, the sandbox and the checks) in
`course.grader`.

With the environment variable `COURSE_SOLUTIONS=1`, `import course.<exercise module>` gives the reference instead:
the book build, CI and instructors run that way.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys

from course.grader.exercises import ALL_MODULES, CHAPTER_OF, CHAPTERS, SOLUTIONS_DIR

__all__ = ["check", "setup", "hint", "reference_mode", "show_exercise", "glue"]


def reference_mode() -> bool:
    return os.environ.get("COURSE_SOLUTIONS", "").strip().lower() in {"1", "true", "yes", "on"}


class _ReferenceFinder(importlib.abc.MetaPathFinder):
    """Serves `course.<exercise module>` from `solutions/<module>.py` (in reference mode only)."""

    def find_spec(self, fullname, path=None, target=None):
        package, _, name = fullname.rpartition(".")
        if package != "course" or name not in ALL_MODULES or not reference_mode():
            return None
        source = SOLUTIONS_DIR / f"{name}.py"
        return importlib.util.spec_from_file_location(fullname, source) if source.exists() else None


if not any(isinstance(f, _ReferenceFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _ReferenceFinder())


def check(target: str = "all", **kwargs):
    """Grade exercises against the reference and show the result: `check("dit.modulate")`, `check("dit")`."""
    from course.grader.grading import check as _check

    return _check(target, **kwargs)


def hint(name: str, level: int | None = None, reset: bool = False) -> None:
    """The next hint for an exercise, one level per call (`hint("uvit.UViT.forward")`): the first says what to look
    at, the last is close to the recipe. `level=k` shows level k again; `reset=True` starts over."""
    from course.grader.exercises import hint_text

    try:
        print(hint_text(name, level, reset))
    except KeyError as e:
        print(e.args[0])


def show_exercise(name: str):
    """Show what to write for an exercise (and, in the built book, the reference folded away)."""
    from course.lab.show import show_exercise as _show

    return _show(name)


def glue(name: str, value, display: bool = False):
    """Hand a measured number to the book's prose (myst-nb `glue`; a no-op without myst-nb)."""
    from course.lab.show import glue as _glue

    return _glue(name, value, display)


def setup(module: str | None = None, seed: int = 0):
    """Start a chapter: say which code runs, pick the device, and seed everything.

    `module` is any exercise module of the chapter (`setup("dit")`); None for a chapter after the last exercises
    (the summary). In a learner's environment, exercises of *earlier* chapters that are not done yet are replaced
    by the reference (said once), so a later chapter always runs. The chapter's own exercises are left as they are.
    Call it before importing the chapter's module.
    """
    from course.lab.config import PROFILE, device, seed_everything

    seed_everything(seed)
    lines = [f"profile `{PROFILE.name}` on {device()}"]
    if reference_mode():
        lines.append("running the reference solutions (COURSE_SOLUTIONS=1)")
    else:
        chapter = list(CHAPTERS).index(CHAPTER_OF[module]) if module else len(CHAPTERS)
        earlier = [m for ch in list(CHAPTERS)[:chapter] for m in CHAPTERS[ch]]
        borrowed = use_reference_for_unfinished(earlier)
        if borrowed:
            lines.append("not done yet, so the reference stands in for: " + ", ".join(borrowed))
    if _reload_edits():
        lines.append("your edits to course/*.py take effect in the next cell")
    print("; ".join(lines))


def _reload_edits() -> bool:
    """In IPython (JupyterLab, the book), reload an exercise module before each cell once its file changed, so that
    the notebook runs what the learner just wrote: `check(...)` grades the file on disk, and without this the
    notebook would keep the stub it imported until the kernel restarts (IPython's autoreload, explicit mode)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    ip = get_ipython()
    if ip is None or reference_mode():
        return False
    if "IPython.extensions.autoreload" not in ip.extension_manager.loaded:
        ip.run_line_magic("load_ext", "autoreload")
    ip.run_line_magic("autoreload", "1")
    for module in ALL_MODULES:
        if (SOLUTIONS_DIR / f"{module}.py").exists():
            ip.run_line_magic("aimport", f"course.{module}")
    return True


def use_reference_for_unfinished(module_names) -> list[str]:
    """Patch every stub exercise of the given learner modules with the reference; return their names."""
    import importlib

    from course.grader.exercises import exercises, is_stub, reference_module, resolve, _set

    borrowed = []
    for module in module_names:
        if not (SOLUTIONS_DIR / f"{module}.py").exists():
            continue
        mod = importlib.import_module(f"course.{module}")
        for name in exercises(module):
            qualname = name.split(".", 1)[1]
            if is_stub(resolve(mod, qualname)):
                _set(mod, qualname, resolve(reference_module(module), qualname))
                borrowed.append(name)
    return borrowed
