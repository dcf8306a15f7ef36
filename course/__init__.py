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
import importlib.machinery
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


class _BorrowingLoader(importlib.abc.Loader):
    """Loads a learner's exercise module after the stubs of every *earlier* chapter have been replaced by the
    reference, so that a script, `python -m ...` or a learner's own test can import a later chapter's module
    before the earlier chapters are done (the notebooks' `setup()` does the same, and says so)."""

    def __init__(self, loader, module: str):
        self.loader, self.module = loader, module

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        chapter = list(CHAPTERS).index(CHAPTER_OF[self.module])
        if _SETUP_CHAPTER is not None:  # in a notebook, setup() names the chapter: its exercises stay the learner's
            chapter = min(chapter, _SETUP_CHAPTER)
        earlier = [m for ch in list(CHAPTERS)[:chapter] for m in CHAPTERS[ch]]
        borrowed = use_reference_for_unfinished(earlier)
        if borrowed and not _QUIET:
            print(f"course.{self.module}: not done yet, so the reference stands in for: " + ", ".join(borrowed),
                  file=sys.stderr)
        self.loader.exec_module(module)

    def __getattr__(self, name):  # get_source, get_filename, ... for linecache, inspect and reloading
        return getattr(self.loader, name)


class _BorrowFinder(importlib.abc.MetaPathFinder):
    """Serves `course.<exercise module>` from the learner's file through `_BorrowingLoader` (learner mode only)."""

    def find_spec(self, fullname, path=None, target=None):
        package, _, name = fullname.rpartition(".")
        if package != "course" or name not in ALL_MODULES or reference_mode():
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _BorrowingLoader(spec.loader, name)
        return spec


_BORROWED: list[str] = []  # every exercise of an earlier chapter that the reference stands in for, in order
_QUIET = False  # setup() says it itself
_SETUP_CHAPTER: int | None = None  # the chapter that setup() started, if any

if not any(isinstance(f, _ReferenceFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _ReferenceFinder())
if not any(isinstance(f, _BorrowFinder) for f in sys.meta_path):
    sys.meta_path.insert(1, _BorrowFinder())


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
    Call it before importing the chapter's module. (Outside a notebook, importing `course.<module>` does the same
    for the chapters before that module's, and says so on stderr.)
    """
    global _QUIET, _SETUP_CHAPTER
    from course.lab.config import PROFILE, device, seed_everything

    seed_everything(seed)
    lines = [f"profile `{PROFILE.name}` on {device()}"]
    if reference_mode():
        lines.append("running the reference solutions (COURSE_SOLUTIONS=1)")
    else:
        chapter = list(CHAPTERS).index(CHAPTER_OF[module]) if module else len(CHAPTERS)
        _SETUP_CHAPTER = chapter
        earlier = [m for ch in list(CHAPTERS)[:chapter] for m in CHAPTERS[ch]]
        _QUIET = True
        try:
            use_reference_for_unfinished(earlier)
        finally:
            _QUIET = False
        borrowed = [name for name in _BORROWED if name.split(".")[0] in earlier]
        if borrowed:
            lines.append("not done yet, so the reference stands in for: " + ", ".join(borrowed))
    _QUIET = True
    try:
        reloading = _reload_edits()
    finally:
        _QUIET = False
    if reloading:
        lines.append("your edits to course/*.py take effect in the next cell")
    _offer_hint()
    print("; ".join(lines))


def _offer_hint() -> None:
    """In IPython, `hint("module.name")` works in the chapter without importing it (the checks point to it)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    ip = get_ipython()
    if ip is not None:
        ip.user_ns.setdefault("hint", hint)


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
                _BORROWED.append(name)
    return borrowed
