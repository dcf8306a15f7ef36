"""The grader: every exercise is compared with the reference, one block at a time.

A check is a function `check_x(impl, ref)` registered with `@exercise("module.qualname")` in
`course/checks/<module>.py`. `impl` is the implementation under test, loaded afresh with every *other* exercise of
its module replaced by the reference (so one block is graded alone); `ref` is the reference module. A check raises
`CheckFailed` with a message for the learner, or returns a short note on what passed.

Whatever the learner's code does (raise, return NaN, a wrong shape, a wrong dtype, loop forever, fail to import), the
result is a failed check with a message that names the exercise, what was expected, what came back and a hint.
"""
from __future__ import annotations

import contextlib
import difflib
import html
import importlib
import os
import signal
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import torch

from course.exercises import (COURSE_DIR, SOLUTIONS_DIR, exercises, is_stub, load_module, modules, reference_module,
                              resolve, stub_message)

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
        importlib.import_module(f"course.checks.{module}")
    return dict(_REGISTRY)


# ---------------------------------------------------------------------------------------------------------------
# Helpers for writing checks
# ---------------------------------------------------------------------------------------------------------------
def describe(x) -> str:
    if isinstance(x, torch.Tensor):
        return f"a tensor of shape {tuple(x.shape)}, dtype {x.dtype}, on {x.device}"
    return f"a {type(x).__name__}"


def expect_tensor(got, *, like: torch.Tensor | None = None, shape=None, dtype=None, device=None,
                  what: str = "the output", finite: bool = True) -> torch.Tensor:
    """Fail unless `got` is a tensor with the expected shape, dtype and device, and (by default) finite."""
    if like is not None:
        shape = tuple(like.shape) if shape is None else shape
        dtype = like.dtype if dtype is None else dtype
        device = like.device if device is None else device
    if not isinstance(got, torch.Tensor):
        raise CheckFailed(f"{what} should be a torch.Tensor, got {describe(got)}.")
    if shape is not None and tuple(got.shape) != tuple(shape):
        raise CheckFailed(f"{what} should have shape {tuple(shape)}, got {tuple(got.shape)}.")
    if dtype is not None and got.dtype != dtype:
        raise CheckFailed(f"{what} should have dtype {dtype}, got {got.dtype}. "
                          "Hint: create new tensors with `dtype=`/`device=` of the inputs (or `torch.*_like`).")
    if device is not None and got.device.type != torch.device(device).type:
        raise CheckFailed(f"{what} should be on {device}, got {got.device}. "
                          "Hint: create new tensors on the inputs' device.")
    if finite and got.is_floating_point() and not torch.isfinite(got).all():
        bad = (~torch.isfinite(got)).sum().item()
        raise CheckFailed(f"{what} has {bad} NaN or infinite value(s). Hint: look for a division by zero, "
                          "the log or square root of a negative number, or an uninitialised tensor (torch.empty).")
    return got


def _close(got: torch.Tensor, want: torch.Tensor, atol: float, rtol: float) -> bool:
    return tuple(got.shape) == tuple(want.shape) and torch.allclose(
        got.detach().to(want.dtype), want.detach(), atol=atol, rtol=rtol)


def expect_close(got, want: torch.Tensor, *, what: str = "the output", atol: float = 1e-5, rtol: float = 1e-4,
                 hint: str = "", mistakes: dict | None = None, check_dtype: bool = True) -> None:
    """Fail unless `got` matches the reference `want` within `atol + rtol * |want|`.

    `mistakes` maps a description of a common mistake to the output it would give; a learner's output that
    matches one is told which.
    """
    expect_tensor(got, like=want, dtype=None if not check_dtype else want.dtype, what=what)
    if _close(got, want, atol, rtol):
        return
    for description, wrong in (mistakes or {}).items():
        if wrong is not None and _close(got, wrong, atol, rtol) and not _close(wrong, want, atol, rtol):
            raise CheckFailed(f"{what} looks like a common mistake: {description}.")
    diff = (got.detach().double() - want.detach().double()).abs()
    index = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape)) if diff.dim() else ()
    message = (f"{what} differs from the reference: largest difference {diff.max().item():.3g} at index {index} "
               f"(yours {got.detach().double()[index].item():.6g}, expected {want.detach().double()[index].item():.6g}; "
               f"tolerance atol={atol:g}, rtol={rtol:g}).")
    raise CheckFailed(message + (f" Hint: {hint}" if hint else ""))


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


class seeded:
    """A context in which the global torch RNG is seeded, and restored afterwards."""

    def __init__(self, seed: int):
        self.seed = seed

    def __enter__(self):
        self.state = torch.get_rng_state()
        torch.manual_seed(self.seed)

    def __exit__(self, *exc):
        torch.set_rng_state(self.state)
        return False


def build_pair(impl_cls, ref_cls, *args, seed: int = 0, **kwargs):
    """The reference module and the learner's, with the same weights. The learner's `__init__` is given code, so a
    mismatch of parameter names means the given `__init__` was edited."""
    with seeded(seed):
        ref = ref_cls(*args, **kwargs)
    with seeded(seed):
        mine = impl_cls(*args, **kwargs)
    missing = set(ref.state_dict()) ^ set(mine.state_dict())
    if missing:
        raise CheckFailed(f"{impl_cls.__name__}.__init__ should build the same layers as the reference; these "
                          f"parameters differ: {sorted(missing)[:6]}. Hint: write only the method, keep the given "
                          "`__init__` as it is.")
    mine.load_state_dict(ref.state_dict())
    return mine, ref


def compare_forward(mine: torch.nn.Module, ref: torch.nn.Module, inputs: tuple, *, method: str = "forward",
                    what: str = "the output", atol: float = 1e-5, rtol: float = 1e-4, grads: bool = True,
                    seed: int = 0, hint: str = "", mistakes: dict | None = None, kwargs: dict | None = None):
    """Run `method` of both modules on copies of `inputs` (same seed), compare outputs, then gradients of the
    floating-point inputs and of every parameter for one random cotangent. Returns the reference output."""
    kwargs = kwargs or {}

    def prepare():
        return tuple(x.detach().clone().requires_grad_(grads and x.is_floating_point())
                     if isinstance(x, torch.Tensor) else x for x in inputs)

    ref_in, my_in = prepare(), prepare()
    with seeded(seed):
        want = getattr(ref, method)(*ref_in, **kwargs)
    with seeded(seed):
        got = getattr(mine, method)(*my_in, **kwargs)
    expect_close(got, want, what=what, atol=atol, rtol=rtol, hint=hint, mistakes=mistakes)
    if not grads:
        return want
    with seeded(seed + 1):
        cotangent = torch.randn_like(want)
    (want * cotangent).sum().backward()
    try:
        (got * cotangent).sum().backward()
    except RuntimeError as e:
        raise CheckFailed(f"backpropagating through your {method} failed: {e}. Hint: avoid in-place changes of "
                          "tensors that autograd needs (use `x = x + ...` rather than `x += ...`) and `.detach()`.")
    for i, (a, b) in enumerate(zip(my_in, ref_in)):
        if isinstance(b, torch.Tensor) and b.grad is not None:
            if a.grad is None:
                raise CheckFailed(f"no gradient reaches input {i} of {method}: is it detached somewhere?")
            expect_close(a.grad, b.grad, what=f"the gradient with respect to input {i}", atol=atol * 10,
                         rtol=rtol * 10)
    mine_params = dict(mine.named_parameters())
    for name, p in ref.named_parameters():
        q = mine_params[name]
        if p.grad is None and q.grad is None:
            continue
        if q.grad is None:
            raise CheckFailed(f"parameter `{name}` gets no gradient from your {method}; the reference uses it.")
        if p.grad is None:
            raise CheckFailed(f"parameter `{name}` gets a gradient from your {method}; the reference does not use "
                              "it here.")
        expect_close(q.grad, p.grad, what=f"the gradient of `{name}`", atol=atol * 10, rtol=rtol * 10)
    return want


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


def run_exercise(name: str, directory: Path | str | None = None, timeout: float = DEFAULT_TIMEOUT,
                 impl=None) -> Result:
    """Grade one exercise of the implementation in `directory` (default: `course/`); never raises.

    `impl` may be given directly (a module already loaded and possibly patched; the tests use this).
    """
    directory = Path(directory or COURSE_DIR)
    module, qualname = name.split(".", 1)
    start = time.perf_counter()

    def result(passed: bool, message: str) -> Result:
        return Result(name, passed, message, time.perf_counter() - start)

    checks = registry()
    if name not in checks:
        return result(False, f"unknown exercise `{name}`.")
    try:
        if impl is None:
            impl = load_module(module, directory, isolate=name)
    except CheckTimeout:
        return result(False, f"importing {module}.py took longer than {timeout:g} s.")
    except SyntaxError as e:
        return result(False, f"{module}.py could not be imported: SyntaxError at line {e.lineno}: {e.msg}. "
                             "Fix it first; every exercise of this module fails until then.")
    except Exception as e:  # noqa: BLE001 - whatever the file raises on import is the learner's to see
        return result(False, f"{module}.py could not be imported: {type(e).__name__}: {e}{_where(e, directory)}.")
    try:
        fn = resolve(impl, qualname)
    except AttributeError:
        return result(False, f"`{qualname}` is missing from {module}.py. Hint: keep the given names.")
    if is_stub(fn):
        return result(False, stub_message(name))
    try:
        with time_limit(timeout), one_thread():
            note = checks[name](impl, reference_module(module))
    except CheckTimeout:
        return result(False, f"took longer than {timeout:g} s and was stopped. Hint: look for a loop that never "
                             "ends, or work that grows with the data where it should not.")
    except CheckFailed as e:
        return result(False, str(e))
    except NotImplementedError as e:
        return result(False, str(e) or f"NotImplementedError{_where(e, directory)}")
    except Exception as e:  # noqa: BLE001 - the learner's exception becomes a failed check
        return result(False, f"your code raised {type(e).__name__}: {e}{_where(e, directory)}.")
    return result(True, note or "matches the reference.")


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
