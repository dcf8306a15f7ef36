"""The grader: every exercise is compared with the reference, one block at a time.

A check is a function `check_x(impl, ref)` registered with `@exercise("module.qualname")` in
`course/grader/checks/<module>.py`, written with the kit in `course/grader/checks/kit.py`. `impl` is the
implementation under test, loaded afresh with every *other* exercise of its module replaced by the reference (so one
block is graded alone); `ref` is the reference module. A check raises `CheckFailed` with a message for the learner,
or returns a short note on what passed.

Whatever the learner's code does (raise, return NaN, a wrong shape, a wrong dtype, loop forever, exit, fail to
import), the result is a failed check with a message that names the exercise, what was expected, what came back and
a hint. Here everything runs in the calling process (the notebook's `check`, fast); `python -m course grade` and
`check --impl DIR --json` run each exercise of a submission in a sandboxed child and decide passes in the grader
(`course/grader/sandbox.py`).
"""
from __future__ import annotations

import contextlib
import difflib
import html
import importlib
import os
import re
import signal
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import torch

from course.grader.exercises import (COURSE_DIR, SOLUTIONS_DIR, _set, exercises, load_module, modules, reference_module,
                              resolve, stub_message, student_source)

DEFAULT_TIMEOUT = float(os.environ.get("COURSE_CHECK_TIMEOUT", 60))
_REGISTRY: dict[str, callable] = {}


class CheckFailed(AssertionError):
    """Raised by a check with the message the learner reads."""


class CheckTimeout(BaseException):
    """Raised inside a check that ran past its time limit (a BaseException, so a bare `except Exception` in the
    learner's code cannot swallow it)."""


def exercise(name: str):
    """Register a check: `@exercise("dit.modulate") def check_modulate(impl, ref): ...`."""

    def register(fn):
        _REGISTRY[name] = fn
        return fn

    return register


def registry() -> dict[str, callable]:
    for module in modules():
        importlib.import_module(f"course.grader.checks.{module}")
    return dict(_REGISTRY)


# ---------------------------------------------------------------------------------------------------------------
# Rules the grader confirms in its own process
# ---------------------------------------------------------------------------------------------------------------
def _rule_zero(got: torch.Tensor) -> str | None:
    if not bool((got == 0).all()):
        return f"should be all zeros; {int((got != 0).sum())} of {got.numel()} values are not."
    return None


def _rule_xavier(got: torch.Tensor, *, fan_in: int, fan_out: int) -> str | None:
    bound = (6.0 / (fan_in + fan_out)) ** 0.5
    w = got.double()
    if float(w.abs().max()) > bound * (1 + 1e-5):
        return (f"has values up to {float(w.abs().max()):.4g}, beyond the xavier-uniform bound {bound:.4g} "
                f"(fan_in={fan_in}, fan_out={fan_out}).")
    if not 0.9 < float(w.std()) / (bound / 3 ** 0.5) < 1.1:
        return f"should be xavier-uniform (std {bound / 3 ** 0.5:.4g}); its std is {float(w.std()):.4g}."
    return None


def _rule_normal(got: torch.Tensor, *, std: float) -> str | None:
    w = got.double()
    if not (0.9 < float(w.std()) / std < 1.1 and abs(float(w.mean())) < 0.2 * std):
        return f"should be drawn from N(0, {std}²); its std is {float(w.std()):.4g} and mean {float(w.mean()):.3g}."
    return None


def _rule_dropped(got: torch.Tensor, *, labels: torch.Tensor, null: int, p: float, tol: float) -> str | None:
    dropped = got != labels
    if not bool((got[dropped] == null).all()):
        return f"should keep each label or replace it by the null label {null}; it holds other values."
    frac = float(dropped.double().mean())
    if not abs(frac - p) < tol:
        return f"should drop about {p:.0%} of the labels; {frac:.1%} were dropped."
    return None


RULES = {"zero": _rule_zero, "xavier": _rule_xavier, "normal": _rule_normal, "dropped": _rule_dropped}


def confirm(got, rule: str, *, what: str = "the output", **params) -> None:
    """Fail unless the tensor `got` obeys `RULES[rule]` with `params` (e.g. `confirm(w, "xavier", fan_in=8,
    fan_out=4)`). For what a check can only assert, not compare with the reference's value (a random draw's
    statistics, an initialisation's distribution). In `python -m course grade` the rule is applied again in the
    grader's process, to the tensor the learner's code produced, with the parameters of the reference's run; the
    reference must obey it too, and give a tensor of the same shape and dtype."""
    if type(got) not in (torch.Tensor, torch.nn.Parameter):
        raise CheckFailed(f"{what} should be a torch.Tensor, got a {type(got).__name__}.")
    problem = RULES[rule](torch.Tensor.detach(got), **params)
    if problem:
        raise CheckFailed(f"{what} {problem}")


# ---------------------------------------------------------------------------------------------------------------
# Running checks
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Result:
    exercise: str
    passed: bool
    message: str
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"exercise": self.exercise, "passed": self.passed, "message": self.message,
                "seconds": round(self.seconds, 3)}

    def __str__(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}  {self.exercise}  ({self.seconds:.2f} s)\n      {self.message}"


@dataclass
class Report:
    results: list[Result] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(r.passed for r in self.results)

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        n = sum(r.passed for r in self.results)
        return "\n".join([str(r) for r in self.results] + [f"{n}/{len(self.results)} passed"])

    __repr__ = __str__

    def _repr_html_(self) -> str:
        rows = []
        for r in self.results:
            colour, mark = ("#1a7f37", "&#10004;") if r.passed else ("#cf222e", "&#10008;")
            rows.append(
                f'<div style="border-left:4px solid {colour};padding:4px 10px;margin:4px 0;'
                f'background:{colour}14;font-family:var(--jp-code-font-family,monospace);font-size:13px">'
                f'<b style="color:{colour}">{mark} {html.escape(r.exercise)}</b> '
                f'<span style="opacity:.6">({r.seconds:.2f} s)</span><br>{html.escape(r.message)}</div>')
        n = sum(r.passed for r in self.results)
        rows.append(f"<div style='margin-top:2px'><b>{n}/{len(self.results)} passed</b></div>")
        return "\n".join(rows)


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise CheckTimeout in the main thread after `seconds` (no limit where signals are not available)."""
    usable = seconds and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def on_alarm(signum, frame):
        raise CheckTimeout()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def one_thread():
    """Checks use tiny tensors: one intra-op thread is faster, and far faster when other processes share the
    cores (pytest -n 2, a busy laptop), where PyTorch's spinning worker threads slow small ops 10-100×."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _where(exc: BaseException, directory: Path) -> str:
    """The last line of the traceback that is in the learner's file, as ' (at dit.py line 42: `x = ...`)'."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if Path(f.filename).resolve().parent == directory.resolve()]
    if not frames:
        return ""
    f = frames[-1]
    return f" (at {Path(f.filename).name} line {f.lineno}: `{(f.line or '').strip()}`)"


def is_untouched_stub(fn, name: str) -> bool:
    """True when `fn` is still the generated stub of exercise `name`: the same bytecode and constants as the stub
    `python -m course generate` writes (given checks before the block included). A learner's function that merely
    holds a string starting like a stub message is not a stub."""
    code = getattr(fn, "__code__", None)
    if code is None or stub_message(name) not in code.co_consts:
        return False
    stub = _generated_stub_code(name)
    return stub is None or (code.co_code == stub.co_code and code.co_consts == stub.co_consts)


_STUB_CODE: dict[str, object] = {}


def _generated_stub_code(name: str):
    """The code object of exercise `name` in the generated learner file (compiled from solutions/ now)."""
    if name not in _STUB_CODE:
        module, qualname = name.split(".", 1)
        try:
            code = compile(student_source(module), f"<stub {module}>", "exec")
            found = None

            def walk(c, prefix):
                nonlocal found
                for const in c.co_consts:
                    if hasattr(const, "co_code"):
                        q = prefix + const.co_name
                        if q == qualname:
                            found = const
                        walk(const, q + ".")

            walk(code, "")
            _STUB_CODE[name] = found
        except SyntaxError:
            _STUB_CODE[name] = None
    return _STUB_CODE[name]


def isolate(mod, name: str, given=None) -> None:
    """Replace every exercise of `mod` other than `name` by the reference's (or by `given`'s, a module holding the
    reference's code for every exercise but `name`), so that `name` is graded alone. An exercise the learner's file
    lacks (a renamed class, say) is left out here: its own check says so."""
    module = name.split(".", 1)[0]
    reference = given if given is not None else reference_module(module)
    for other in exercises(module):
        if other != name:
            qualname = other.split(".", 1)[1]
            try:
                _set(mod, qualname, resolve(reference, qualname))
            except AttributeError:
                continue


_INTERNAL = re.compile(r"_course_impl_\d+\.")


def _clean(message: str) -> str:
    """The learner reads `dit.py`, never the private package name a submission is loaded under."""
    return _INTERNAL.sub("", message)


def _exited(e: SystemExit) -> str:
    return (f"your code called sys.exit({'' if e.code is None else repr(e.code)}) (or raised SystemExit), which "
            "ends the check. Hint: return a value instead; never exit from an exercise module.")


def load_exercise(name: str, directory: Path, timeout: float = DEFAULT_TIMEOUT, given: Path | None = None):
    """Import the learner's module for exercise `name` from `directory`, the module's other exercises replaced by
    the reference's (read from the file `given` when set: the sandbox's copy without `name`'s body). Returns
    (module, None), or (None, what the learner reads) when the file cannot be imported."""
    module = name.split("/" if "/" in name else ".", 1)[0]
    try:
        impl = load_module(module, directory)
        if "/" not in name:
            isolate(impl, name, load_given(module, impl, given) if given is not None else None)
    except CheckTimeout:
        return None, f"importing {module}.py took longer than {timeout:g} s."
    except SystemExit as e:
        return None, f"{module}.py could not be imported: {_exited(e)}"
    except SyntaxError as e:
        return None, (f"{module}.py could not be imported: SyntaxError at line {e.lineno}: {e.msg}. "
                      "Fix it first; every exercise of this module fails until then.")
    except Exception as e:  # noqa: BLE001 - whatever the file raises on import is the learner's to see
        return None, f"{module}.py could not be imported: {type(e).__name__}: {e}{_where(e, directory)}."
    return impl, None


def load_given(module: str, impl, given: Path):
    """The module of `given` (the reference's code but one exercise), imported beside `impl` in its package."""
    from course.grader.exercises import _exec_file

    package = impl.__name__.rsplit(".", 1)[0]
    return _exec_file(f"{package}.{module}_given", Path(given))


def not_started(impl, name: str) -> str | None:
    """What the learner reads when exercise `name` is missing from their module or still the stub, else None."""
    if "/" in name:
        return None
    module, qualname = name.split(".", 1)
    try:
        fn = resolve(impl, qualname)
    except AttributeError:
        return f"`{qualname}` is missing from {module}.py. Hint: keep the given names."
    if is_untouched_stub(fn, name):
        return stub_message(name)
    return None


def run_check(name: str, impl, timeout: float = DEFAULT_TIMEOUT, directory: Path | None = None) -> tuple[bool, str]:
    """Run the registered check of `name` on `impl` (a module, or the sandbox's stand-in for one) against the
    reference; (passed, message). Never raises, except for a KeyboardInterrupt or what `impl` raises to end it."""
    directory = Path(directory or COURSE_DIR)
    module = name.split("/" if "/" in name else ".", 1)[0]
    try:
        with time_limit(timeout), one_thread():
            note = registry()[name](impl, reference_module(module))
    except CheckTimeout:
        return False, (f"took longer than {timeout:g} s and was stopped. Hint: look for a loop that never ends, or "
                       "work that grows with the data where it should not.")
    except CheckFailed as e:
        return False, str(e)
    except NotImplementedError as e:
        return False, str(e) or f"NotImplementedError{_where(e, directory)}"
    except SystemExit as e:
        return False, _exited(e)
    except Exception as e:  # noqa: BLE001 - the learner's exception becomes a failed check
        return False, f"your code raised {type(e).__name__}: {e}{_where(e, directory)}."
    return True, note or "matches the reference."


def run_exercise(name: str, directory: Path | str | None = None, timeout: float = DEFAULT_TIMEOUT,
                 impl=None, on_loaded=None) -> Result:
    """Grade one exercise of the implementation in `directory` (default: `course/`); never raises (except for a
    KeyboardInterrupt, which in a notebook is the learner pressing stop).

    `impl` may be given directly (a module already loaded and possibly patched; the tests use this). `on_loaded()` is
    called once the learner's module is imported (the sandbox uses it to tell a hang at import from one in a check).
    A name `module/label` is an instructor's extra check (see `course/grader/sandbox.py`): it gets the learner's whole
    module, not one isolated block.
    """
    directory = Path(directory or COURSE_DIR)
    start = time.perf_counter()

    def result(passed: bool, message: str) -> Result:
        return Result(name, passed, _clean(message), time.perf_counter() - start)

    if name not in registry():
        return result(False, f"unknown exercise `{name}`.")
    if impl is None:
        impl, problem = load_exercise(name, directory, timeout)
        if problem:
            return result(False, problem)
    if on_loaded is not None:
        on_loaded()
    problem = not_started(impl, name)
    if problem:
        return result(False, problem)
    return result(*run_check(name, impl, timeout, directory))


def resolve_targets(targets) -> list[str]:
    """`all`, a module (`dit`) or an exercise (`dit.DiTBlock.forward`) -> exercise names. Raises KeyError."""
    names = exercises()
    out = []
    for target in targets or ["all"]:
        if target == "all":
            out += names
        elif target in modules():
            out += exercises(target)
        elif target in names:
            out.append(target)
        else:
            close = difflib.get_close_matches(target, names + modules(), n=3)
            raise KeyError(f"unknown target `{target}`" + (f"; did you mean {', '.join(close)}?" if close else
                                                            "; `python -m course list` shows them all."))
    return list(dict.fromkeys(out))


def check(target="all", impl: str | Path | None = None, timeout: float = DEFAULT_TIMEOUT) -> Report:
    """Grade `target` (see `resolve_targets`) and return a Report that shows itself in a notebook.

    In reference mode (`COURSE_SOLUTIONS=1`) the reference is graded, which shows what passing looks like. With
    `COURSE_STRICT=1` a failed check raises AssertionError, so that nbval fails on it (for instructors).
    """
    from course import reference_mode

    if impl is None:
        impl = SOLUTIONS_DIR if reference_mode() else COURSE_DIR
    targets = [target] if isinstance(target, str) else list(target)
    report = Report([run_exercise(name, impl, timeout) for name in resolve_targets(targets)])
    if os.environ.get("COURSE_STRICT") == "1" and not report.passed:
        raise AssertionError(str(report))
    return report


def grade_mistake(m) -> Result:
    """Grade a declared mistake (`course.grader.checks.kit.Mistake`) as if a learner had submitted it: the
    reference with that one exercise replaced by the wrong code, or with the wrong edit applied to its source."""
    module, qualname = m.exercise.split(".", 1)
    if m.code is not None:
        impl = load_module(module, SOLUTIONS_DIR, isolate=m.exercise)
        _set(impl, qualname, m.code)
        return run_exercise(m.exercise, impl=impl)
    old, new = m.edit
    source = (SOLUTIONS_DIR / f"{module}.py").read_text()
    if source.count(old) < 1:
        raise ValueError(f"{m}: the edit's old text does not occur in solutions/{module}.py")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / f"{module}.py").write_text(source.replace(old, new))
        return run_exercise(m.exercise, tmp)
