"""Where the exercises live, how the learner's modules are generated, and how implementations are loaded.

`solutions/<module>.py` is the single source of truth. Each exercise body sits between `# BEGIN SOLUTION` and
`# END SOLUTION` inside one function or method; `generate()` turns every such block into a `raise
NotImplementedError(...)` that points to the book, and writes `course/<module>.py`. The exercise's name is the
module plus the qualified name of the enclosing function: `dit.DiTBlock.forward`.

Implementations are loaded as fresh packages (`load_module`), so that a check always sees the file as it is on
disk now, and so that the learner's module and the reference can live side by side.
"""
from __future__ import annotations

import ast
import functools
import importlib.util
import itertools
import sys
import types
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COURSE_DIR = ROOT / "course"
SOLUTIONS_DIR = ROOT / "solutions"

# Chapters in order; a module may import only modules of earlier chapters (or earlier in the same chapter).
CHAPTERS: dict[str, list[str]] = {
    "00_diffusion": ["diffusion"],
    "01_unet_vit": ["layers", "unet", "vit"],
    "02_dit": ["dit"],
    "03_uvit": ["uvit"],
    "04_genvit": ["genvit"],
    "05_diffit": ["diffit"],
    "06_latent": ["latent"],
}
ALL_MODULES = [m for mods in CHAPTERS.values() for m in mods]
CHAPTER_OF = {m: ch for ch, mods in CHAPTERS.items() for m in mods}

BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
STUB_PREFIX = "Exercise `"  # every stub message starts like this; see `stub_message`
HEADER = (
    "# This file is generated from solutions/{module}.py by `python -m course generate`.\n"
    "# Fill in each block that raises NotImplementedError, then run `check(\"{module}\")` in the notebook\n"
    "# or `python -m course check {module}` in a shell.\n"
)


def modules() -> list[str]:
    """The exercise modules that exist, in chapter order."""
    return [m for m in ALL_MODULES if (SOLUTIONS_DIR / f"{m}.py").exists()]


def stub_message(exercise: str) -> str:
    module = exercise.split(".")[0]
    return (f"{STUB_PREFIX}{exercise}` is not done yet: write it in course/{module}.py "
            f"(book/{CHAPTER_OF[module]}.ipynb, section \"Exercise: {exercise}\").")


@dataclass(frozen=True)
class Block:
    exercise: str  # "dit.DiTBlock.forward"
    qualname: str  # "DiTBlock.forward"
    begin: int  # 1-based line of the BEGIN marker
    end: int  # 1-based line of the END marker
    indent: str


def find_blocks(source: str, module: str) -> list[Block]:
    """The marked blocks of a solution module, each named after the function that encloses it."""
    lines = source.splitlines()
    functions: list[tuple[int, int, str]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                functions.append((child.lineno, child.end_lineno, prefix + child.name))
                visit(child, prefix + child.name + ".<locals>.")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")

    visit(ast.parse(source), "")
    blocks, begin = [], None
    for i, line in enumerate(lines, start=1):
        stripped = line.strip()
        if stripped == BEGIN:
            if begin is not None:
                raise ValueError(f"solutions/{module}.py:{i}: {BEGIN} inside another block")
            begin = i
        elif stripped == END:
            if begin is None:
                raise ValueError(f"solutions/{module}.py:{i}: {END} without {BEGIN}")
            enclosing = [f for f in functions if f[0] < begin < f[1]]
            if not enclosing:
                raise ValueError(f"solutions/{module}.py:{begin}: a solution block must sit inside a function")
            qualname = max(enclosing, key=lambda f: f[0])[2]
            indent = lines[begin - 1][: len(lines[begin - 1]) - len(lines[begin - 1].lstrip())]
            blocks.append(Block(f"{module}.{qualname}", qualname, begin, i, indent))
            begin = None
    if begin is not None:
        raise ValueError(f"solutions/{module}.py:{begin}: {BEGIN} without {END}")
    names = [b.exercise for b in blocks]
    if len(set(names)) != len(names):
        raise ValueError(f"solutions/{module}.py: one solution block per exercise, got {names}")
    return blocks


def student_source(module: str, source: str | None = None) -> str:
    """The learner's version of `solutions/<module>.py`: every marked block replaced by a stub."""
    if source is None:
        source = (SOLUTIONS_DIR / f"{module}.py").read_text()
    lines = source.splitlines()
    out = HEADER.format(module=module).splitlines()
    cursor = 0
    for block in find_blocks(source, module):
        out += lines[cursor: block.begin - 1]
        out.append(f"{block.indent}raise NotImplementedError({stub_message(block.exercise)!r})")
        cursor = block.end
    out += lines[cursor:]
    return "\n".join(out) + "\n"


def given_source(name: str) -> str:
    """`solutions/<module>.py` with only the block of exercise `name` replaced by its stub: the reference's code for
    every other exercise of the module, which the sandbox's child needs to grade `name` alone without the body
    of `name` anywhere in its memory."""
    module = name.split(".", 1)[0]
    source = (SOLUTIONS_DIR / f"{module}.py").read_text()
    lines = source.splitlines()
    block = next(b for b in find_blocks(source, module) if b.exercise == name)
    stub = f"{block.indent}raise NotImplementedError({stub_message(name)!r})"
    return "\n".join(lines[: block.begin - 1] + [stub] + lines[block.end:]) + "\n"


def generate(module_names: list[str] | None = None, check_only: bool = False) -> list[str]:
    """Write course/<module>.py for each module; return the modules whose file changed (or would change)."""
    changed = []
    for module in module_names or modules():
        target = COURSE_DIR / f"{module}.py"
        text = student_source(module)
        if not target.exists() or target.read_text() != text:
            changed.append(module)
            if not check_only:
                target.write_text(text)
    return changed


def exercises(module: str | None = None) -> list[str]:
    """Every exercise name, in source order, from the marked blocks of the reference."""
    names = []
    for m in ([module] if module else modules()):
        names += [b.exercise for b in find_blocks((SOLUTIONS_DIR / f"{m}.py").read_text(), m)]
    return names


# ---------------------------------------------------------------------------------------------------------------
# Loading implementations as fresh packages
# ---------------------------------------------------------------------------------------------------------------
_fresh = itertools.count()


def resolve(obj: object, qualname: str):
    """`resolve(module, "DiTBlock.forward")` -> the function object."""
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _set(obj: object, qualname: str, value) -> None:
    *path, last = qualname.split(".")
    for part in path:
        obj = getattr(obj, part)
    setattr(obj, last, value)


def is_stub(fn) -> bool:
    """True when `fn` still raises the generated NotImplementedError: one of its constants is exactly a generated
    stub message (a learner's string that merely starts like one does not count)."""
    code = getattr(fn, "__code__", None)
    return code is not None and any(isinstance(c, str) and c in _stub_messages() for c in code.co_consts)


def _stub_messages() -> frozenset[str]:
    stamp = tuple((m, (SOLUTIONS_DIR / f"{m}.py").stat().st_mtime_ns) for m in modules())
    return _stub_messages_at(stamp)


@functools.lru_cache(maxsize=4)
def _stub_messages_at(stamp: tuple) -> frozenset[str]:
    """Every generated stub message, for the solution files as they were at `stamp` (module, mtime) pairs."""
    return frozenset(stub_message(name) for name in exercises())


def _exec_file(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return mod


def load_module(module: str, directory: Path | str, isolate: str | None = None) -> types.ModuleType:
    """Import `<directory>/<module>.py` afresh, its exercise-module imports served by the reference.

    With `isolate="dit.modulate"`, every other exercise of the module is replaced by the reference's, so a check
    grades one block alone. Raises whatever the file raises on import (a SyntaxError, say).
    """
    directory = Path(directory)
    pkg_name = f"_course_impl_{next(_fresh)}"
    pkg = types.ModuleType(pkg_name)
    pkg.__path__ = [str(SOLUTIONS_DIR)]
    sys.modules[pkg_name] = pkg
    # Earlier modules come from the reference, so that `from .layers import ...` works whatever the learner did.
    for dep in ALL_MODULES[: ALL_MODULES.index(module)]:
        if (SOLUTIONS_DIR / f"{dep}.py").exists():
            setattr(pkg, dep, _exec_file(f"{pkg_name}.{dep}", SOLUTIONS_DIR / f"{dep}.py"))
    path = directory / f"{module}.py"
    if not path.exists():
        raise FileNotFoundError(f"no {module}.py in {directory}")
    mod = _exec_file(f"{pkg_name}.{module}", path)
    if isolate is not None:
        reference = reference_module(module)
        for name in exercises(module):
            if name != isolate:
                qualname = name.split(".", 1)[1]
                _set(mod, qualname, resolve(reference, qualname))
    return mod


_reference_cache: dict[str, types.ModuleType] = {}


def reference_module(module: str) -> types.ModuleType:
    """The reference module, loaded once under a private name (never `course.<module>`)."""
    if module not in _reference_cache:
        _reference_cache[module] = load_module(module, SOLUTIONS_DIR)
    return _reference_cache[module]


# ---------------------------------------------------------------------------------------------------------------
# What the book shows of an exercise
# ---------------------------------------------------------------------------------------------------------------
def exercise_source(name: str) -> tuple[str, str]:
    """(what the learner is given, the reference body) of an exercise, read from `solutions/` now.

    The first is the signature and docstring, under its class line for a method; the second is the marked body,
    dedented."""
    import textwrap

    module = name.split(".")[0]
    source = (SOLUTIONS_DIR / f"{module}.py").read_text()
    lines = source.splitlines()
    block = next(b for b in find_blocks(source, module) if b.exercise == name)
    enclosing = [node for node in ast.walk(ast.parse(source))
                 if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                 and node.lineno < block.begin < node.end_lineno]
    fn = max(enclosing, key=lambda node: node.lineno)
    first = min([fn.lineno] + [d.lineno for d in fn.decorator_list])
    given = lines[first - 1: block.begin - 1] + [block.indent + "..."]
    if "." in block.qualname:
        given = [f"class {block.qualname.split('.')[0]}:", "    ..."] + given
    body = textwrap.dedent("\n".join(lines[block.begin: block.end - 1]))
    return textwrap.dedent("\n".join(given)).rstrip() + "\n", body.rstrip() + "\n"


# ---------------------------------------------------------------------------------------------------------------
# Hints on request
# ---------------------------------------------------------------------------------------------------------------
def _hint_state_path() -> Path:
    """Where the level reached per exercise is kept: `COURSE_HINT_STATE`, else hints.json in the course's cache."""
    import os

    if os.environ.get("COURSE_HINT_STATE"):
        return Path(os.environ["COURSE_HINT_STATE"])
    from course.lab.config import cache_dir

    return cache_dir() / "hints.json"


def hint_text(name: str, level: int | None = None, reset: bool = False) -> str:
    """The next hint of exercise `name` (level 1 the first time, then 2, ...; the last level again once reached),
    or level `level` itself, as text that says "level k of n". `reset` starts the exercise's hints over. Raises
    KeyError for an unknown exercise."""
    import difflib
    import json
    import textwrap

    from course.grader.checks.kit import hint_levels

    names = exercises()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3)
        module = [n for n in names if n.startswith(name + ".")]
        raise KeyError(f"unknown exercise `{name}`" + (f"; its exercises: {', '.join(module)}" if module else
                                                       f"; did you mean {', '.join(close)}?" if close else
                                                       "; `python -m course list` shows them all."))
    levels = hint_levels(name)
    path = _hint_state_path()
    try:
        state = json.loads(path.read_text())
        state = state if isinstance(state, dict) else {}
    except (OSError, ValueError):
        state = {}
    if reset:
        state.pop(name, None)
        if level is None:
            _save_hint_state(path, state)
            return f"hints of {name} start again at level 1."
    if level is None:
        shown = state.get(name, 0)
        level = min(int(shown) + 1 if isinstance(shown, int) else 1, len(levels))
    if not 1 <= level <= len(levels):
        raise KeyError(f"{name} has hint levels 1 to {len(levels)}, not {level}")
    state[name] = max(level, state.get(name, 0) if isinstance(state.get(name), int) else 0)
    _save_hint_state(path, state)
    after = (f"Ask again for level {level + 1}." if level < len(levels) else
             "That is the last level; the chapter's section and the docstring have the contract.")
    text = textwrap.fill(levels[level - 1], 110, initial_indent="  ", subsequent_indent="  ")
    return f"Hint for {name}, level {level} of {len(levels)}:\n{text}\n{after}"


def _save_hint_state(path: Path, state: dict) -> None:
    import json

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(state, indent=1, sort_keys=True))
    except OSError:  # a read-only home: the hints still show, the level is not remembered
        pass

