"""The one kit every check is written with.

A check compares the learner's code with the reference on seeded inputs and fails with a message that says what
was expected, what came back and how to fix it. Three things make that short to write:

* **expectations** (`expect`, `expect_tensor`, `expect_close`): shape, dtype, device, finiteness, closeness;
* **pairs** (`random_pair`, `compare_forward`, `check_denoiser`): the learner's module and the reference's with the
  same random weights, compared forward and backward, and the behaviours every denoiser shares;
* **declared mistakes** (`@mistake`): each plausible wrong version of an exercise is written once, as code with
  the exercise's signature. The check runs it on the same inputs to recognise it and *name* it ("looks like a
  common mistake: the `1 +` is missing"); the test suite grades it as a submission to prove the check fails on it.

A complete small example, the check of `dit.modulate` (see `course/grader/checks/dit.py`)::

    @mistake("dit.modulate", "the `1 +` is missing: x · scale + shift")
    def _(x, shift, scale):
        return x * scale.unsqueeze(1) + shift.unsqueeze(1)

    @exercise("dit.modulate")
    def check_modulate(impl, ref):
        x, shift, scale = ...
        expect_close(impl.modulate(x, shift, scale), ref.modulate(x, shift, scale),
                     mistakes=wrong_outputs("dit.modulate", x, shift, scale))
        return "what passed"

    hints("dit.modulate", "level 1: what to look at (quoted by a failed check)", "level 2: close to the recipe")
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import linecache
import re
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from course.grader import grading
from course.grader.grading import CheckFailed, registry

__all__ = ["CheckFailed", "exercise", "expect", "expect_tensor", "expect_close", "describe", "seeded", "patched",
           "randomize", "build_pair", "random_pair", "compare_forward", "check_denoiser", "Mistake", "mistake",
           "mistake_edit", "mistakes", "all_mistakes", "wrong_outputs", "hints", "hint_levels", "first_hint",
           "trace_calls", "first_difference", "name_a_raise"]


# ---------------------------------------------------------------------------------------------------------------
# Checks and hints
# ---------------------------------------------------------------------------------------------------------------
_HINTS: dict[str, tuple[str, ...]] = {}
_CURRENT: contextvars.ContextVar[str | None] = contextvars.ContextVar("course_exercise", default=None)


def hints(exercise: str, *levels: str) -> None:
    """Declare the hints of `exercise`, two or three levels: the first a nudge (what to look at; the only level a
    failed check may quote), the last close to the recipe. The learner asks for them one at a time with
    `hint("module.name")` or `python -m course hint module.name`."""
    if not 2 <= len(levels) <= 3 or not all(isinstance(t, str) and t.strip() for t in levels):
        raise ValueError(f"{exercise}: declare two or three non-empty hint levels")
    if exercise in _HINTS:
        raise ValueError(f"hints declared twice for {exercise}")
    _HINTS[exercise] = tuple(t.strip() for t in levels)


def hint_levels(exercise: str) -> tuple[str, ...]:
    """The declared hint levels of `exercise` (its checks module is imported on the way)."""
    registry()
    return _HINTS.get(exercise, ())


def first_hint(exercise: str | None = None) -> str:
    """Level 1 of the hints of `exercise` (default: the exercise being checked now), with where to get more."""
    name = exercise or _CURRENT.get()
    levels = _HINTS.get(name, ()) if name else ()
    if not levels:
        return ""
    return f"{levels[0]} (more: hint(\"{name}\"))"


def exercise(name: str):
    """Register a check (`@exercise("dit.modulate") def check_modulate(impl, ref): ...`).

    While it runs, a failed comparison without a hint of its own quotes the first hint level of `name`, and an
    exception raised in the learner's file is reported with the exercise, the line and the shapes it involved."""

    def register(fn):
        @functools.wraps(fn)
        def check(impl, ref):
            token = _CURRENT.set(name)
            try:
                return fn(impl, ref)
            except CheckFailed:
                raise
            except Exception as e:  # noqa: BLE001 - the learner's exception, told in the course's words
                message = _raised_in_learners_file(name, e, impl)
                if message is None:
                    raise
                raise CheckFailed(message) from None
            finally:
                _CURRENT.reset(token)

        grading.exercise(name)(check)
        return fn

    return register


def _shapes_of(names: list[str], f_locals: dict) -> list[str]:
    out = []
    for n in dict.fromkeys(names):
        v = f_locals.get(n)
        if isinstance(v, torch.Tensor):
            out.append(f"{n} {tuple(v.shape)}")
        elif isinstance(v, (list, tuple)) and v and all(isinstance(a, torch.Tensor) for a in v):
            shapes = ", ".join(str(tuple(a.shape)) for a in v[:4]) + (", ..." if len(v) > 4 else "")
            out.append(f"{n} [{shapes}]")
    return out


def _raised_in_learners_file(name: str, e: Exception, impl) -> str | None:
    """'your code raised X: ... at uvit.py line 12 `...` (x (2, 17, 32), skip (2, 16, 32))', or None when no
    frame of the traceback is in the learner's file."""
    if hasattr(e, "course_told"):  # located (or not: None) in the learner's process by the grader's bridge.py
        return e.course_told
    where = getattr(impl, "__file__", None)
    if not where:
        return None
    target = Path(where).resolve()
    frames = [(f, line) for f, line in traceback.walk_tb(e.__traceback__)
              if Path(f.f_code.co_filename).resolve() == target]
    if not frames:
        return None
    frame, lineno = frames[-1]
    code = linecache.getline(frame.f_code.co_filename, lineno).strip()
    shapes = _shapes_of(re.findall(r"[A-Za-z_]\w*", code), frame.f_locals)
    first = (str(e).strip().splitlines() or [""])[0][:240].rstrip(".")
    return (f"{name}: your code raised {type(e).__name__}: {first}, at {target.name} line {lineno}: `{code}`"
            + (f"; there {', '.join(shapes)}" if shapes else "") + ".")


# ---------------------------------------------------------------------------------------------------------------
# Declared mistakes
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Mistake:
    """A plausible wrong version of one exercise.

    `code` has the exercise's signature (a method takes `self`); or, for a slip in given code that no replacement
    function can express, `edit` = (old, new) is a text edit of the reference file. `says` is the fragment of the
    check's message that names it, when that is not `name` itself (for a mistake that fails before any output is
    compared, e.g. one that raises)."""

    exercise: str
    name: str
    code: Callable | None = None
    edit: tuple[str, str] | None = None
    says: str | None = None

    @property
    def fragment(self) -> str:
        return self.says or self.name

    def __str__(self) -> str:
        return f"{self.exercise}: {self.name}"


_MISTAKES: dict[str, list[Mistake]] = {}


def _declare(m: Mistake) -> None:
    known = _MISTAKES.setdefault(m.exercise, [])
    if any(k.name == m.name for k in known):
        raise ValueError(f"mistake declared twice for {m.exercise}: {m.name}")
    known.append(m)


def mistake(exercise: str, name: str, *, says: str | None = None):
    """Declare the decorated function as a wrong version of `exercise`, named `name` for the learner."""

    def register(fn):
        _declare(Mistake(exercise, name, code=fn, says=says))
        return fn

    return register


def mistake_edit(exercise: str, name: str, old: str, new: str, *, says: str | None = None) -> None:
    """Declare a wrong version of `exercise` as an edit of the reference's source (`old` must occur in it)."""
    _declare(Mistake(exercise, name, edit=(old, new), says=says))


def mistakes(exercise: str) -> list[Mistake]:
    """The mistakes declared for one exercise (its checks module must be imported: `registry()` does that)."""
    return list(_MISTAKES.get(exercise, []))


def all_mistakes() -> list[Mistake]:
    registry()
    return [m for ms in _MISTAKES.values() for m in ms]


def wrong_outputs(exercise: str, *args, self=None, seed: int | None = None, **kwargs) -> dict:
    """{name: what the wrong version returns} for each declared mistake of `exercise` with code, run on copies of
    the same arguments (as a method of `self` when given, e.g. the reference module). A wrong version that cannot
    run on these inputs gives None and is not named here."""
    out = {}
    for m in mistakes(exercise):
        if m.code is None:
            continue
        copies = [a.detach().clone() if isinstance(a, torch.Tensor) else a for a in args]
        try:
            with torch.no_grad(), (seeded(seed) if seed is not None else contextlib.nullcontext()):
                out[m.name] = m.code(self, *copies, **kwargs) if self is not None else m.code(*copies, **kwargs)
        except Exception:  # noqa: BLE001 - a wrong version that does not apply to these shapes names nothing
            out[m.name] = None
    return out


# ---------------------------------------------------------------------------------------------------------------
# Expectations
# ---------------------------------------------------------------------------------------------------------------
def describe(x) -> str:
    if isinstance(x, torch.Tensor):
        return f"a tensor of shape {tuple(x.shape)}, dtype {x.dtype}, on {x.device}"
    return f"a {type(x).__name__}"


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def expect_tensor(got, *, like: torch.Tensor | None = None, shape=None, dtype=None, device=None,
                  what: str = "the output", finite: bool = True) -> torch.Tensor:
    """Fail unless `got` is a tensor with the expected shape, dtype and device, and (by default) finite."""
    if like is not None:
        shape = tuple(like.shape) if shape is None else shape
        dtype = like.dtype if dtype is None else dtype
        device = like.device if device is None else device
    if not isinstance(got, torch.Tensor) or type(got) not in (torch.Tensor, nn.Parameter):
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
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(want.shape):
        return False
    diff = (got.detach().double() - want.detach().double()).abs()
    return bool((diff <= atol + rtol * want.detach().double().abs()).all())


def expect_close(got, want: torch.Tensor, *, what: str = "the output", atol: float = 1e-5, rtol: float = 1e-4,
                 hint: str = "", mistakes: dict | None = None, check_dtype: bool = True) -> None:
    """Fail unless `got` matches the reference `want` within `atol + rtol · |want|`.

    `mistakes` maps a mistake's name to the output it gives (`wrong_outputs`); an output that matches one is told
    which. The comparison is done here in float64, never with the learner's (patchable) torch.allclose.
    """
    expect_tensor(got, like=want, dtype=None if not check_dtype else want.dtype, what=what)
    if _close(got, want, atol, rtol):
        return
    for description, wrong in (mistakes or {}).items():
        if isinstance(wrong, torch.Tensor) and _close(got, wrong, atol, rtol) and not _close(wrong, want, atol, rtol):
            raise CheckFailed(f"{what} looks like a common mistake: {description}.")
    diff = (got.detach().double() - want.detach().double()).abs()
    index = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape)) if diff.dim() else ()
    yours, expected = got.detach().double()[index].item(), want.detach().double()[index].item()
    message = (f"{what} differs from the reference: largest difference {diff.max().item():.3g} at index {index} "
               f"(yours {yours:.6g}, expected {expected:.6g}; "
               f"tolerance atol={atol:g}, rtol={rtol:g}).")
    hint = hint or first_hint()
    raise CheckFailed(message + (f" Hint: {hint}" if hint else ""))


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


@contextlib.contextmanager
def patched(obj, **attrs):
    """Temporarily replace attributes (submodules or methods) of an object."""
    old = {name: getattr(obj, name) for name in attrs}
    for name, value in attrs.items():
        setattr(obj, name, value)
    try:
        yield obj
    finally:
        for name, value in old.items():
            setattr(obj, name, value)


# ---------------------------------------------------------------------------------------------------------------
# Locating a fault: the given submodules' inputs and outputs, step by step
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Call:
    """One call of a watched submodule: its name, the k-th call of it, its tensor arguments and its output."""

    name: str
    index: int
    args: dict
    output: object


def _tensors(value):
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, (list, tuple)):
        return type(value)(_tensors(v) for v in value)
    return value


def trace_calls(model: nn.Module, names, inputs: tuple, *, method: str = "forward", seed: int = 0,
                kwargs: dict | None = None) -> tuple[list[Call], BaseException | None]:
    """Run `method` of `model` once (no grad, seeded) with forward hooks on the submodules `names` (as in
    `named_modules()`; a name missing from the model is skipped) and record every call in order. Returns the calls
    and the exception the run raised, if any."""
    modules = dict(model.named_modules())
    calls: list[Call] = []
    counts: dict[str, int] = {}
    handles = []

    def watch(name, module):
        try:
            params = list(inspect.signature(module.forward).parameters)
        except (TypeError, ValueError):
            params = []

        def hook(mod, args, kw, out):
            named = {(params[i] if i < len(params) else f"argument {i}"): _tensors(a) for i, a in enumerate(args)}
            named.update({k: _tensors(v) for k, v in kw.items()})
            calls.append(Call(name, counts.get(name, 0), named, _tensors(out)))
            counts[name] = counts.get(name, 0) + 1

        return module.register_forward_hook(hook, with_kwargs=True)

    for name in names:
        if name in modules:
            handles.append(watch(name, modules[name]))
    error = None
    try:
        copies = tuple(x.detach().clone() if isinstance(x, torch.Tensor) else x for x in inputs)
        with torch.no_grad(), seeded(seed):
            getattr(model, method)(*copies, **(kwargs or {}))
    except Exception as e:  # noqa: BLE001 - the calls recorded before it still locate the fault
        error = e
    finally:
        for h in handles:
            h.remove()
    return calls, error


def _same(a, b, atol: float, rtol: float) -> bool:
    if isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and _close(a, b, atol, rtol)
    if isinstance(b, (list, tuple)):
        return isinstance(a, (list, tuple)) and len(a) == len(b) and all(_same(x, y, atol, rtol) for x, y in zip(a, b))
    return not isinstance(a, torch.Tensor)


def first_difference(mine: nn.Module, ref: nn.Module, inputs: tuple, steps: dict[str, str], *,
                     method: str = "forward", seed: int = 0, kwargs: dict | None = None, atol: float = 1e-5,
                     rtol: float = 1e-4) -> str | None:
    """Where the learner's run first departs from the reference's: hooks on the given submodules `steps` (name ->
    what to look at when that step's input differs) record both runs, compared call by call in the reference's order.
    Returns a sentence ("the first step that differs: the input of `attn` ...: look at ...") or None when every
    watched call agrees (the fault is after the last one) or nothing could be traced."""
    names = [n for n in steps if n != "*"]
    want, error = trace_calls(ref, names, inputs, method=method, seed=seed, kwargs=kwargs)
    if error is not None or not want:
        return None
    got, _ = trace_calls(mine, names, inputs, method=method, seed=seed, kwargs=kwargs)
    by_key = {(c.name, c.index): c for c in got}
    total = {}
    for c in want:
        total[c.name] = total.get(c.name, 0) + 1

    def label(c: Call) -> str:
        return f"`{c.name}`" + (f" (call {c.index + 1} of {total[c.name]})" if total[c.name] > 1 else "")

    for c in want:
        advice = steps[c.name]
        mine_call = by_key.get((c.name, c.index))
        if mine_call is None:
            times = "never called" if c.index == 0 else f"called only {c.index} time(s)"
            return f"The first step that differs: {label(c)} is {times} in your code; the reference calls it " \
                   f"here. Look at {advice}."
        for arg, value in c.args.items():
            if arg in mine_call.args and not _same(mine_call.args[arg], value, atol, rtol):
                what = "input" if len(c.args) == 1 else f"`{arg}` argument"
                return f"The first step that differs: the {what} of {label(c)}. Look at {advice}."
            if arg not in mine_call.args and isinstance(value, torch.Tensor):
                return f"The first step that differs: {label(c)} gets no `{arg}`. Look at {advice}."
        if not _same(mine_call.output, c.output, atol, rtol):
            return f"The first step that differs: the output of {label(c)} (its inputs match: is it called with " \
                   f"other arguments?). Look at {advice}."
    extra = [c for c in got if c.index >= total.get(c.name, 0)]
    if extra:
        return f"The first step that differs: your code calls `{extra[0].name}` more often than the reference " \
               f"({total.get(extra[0].name, 0)} time(s)). Look at {steps[extra[0].name]}."
    if "*" in steps:
        return f"Every watched step ({', '.join(f'`{n}`' for n in dict.fromkeys(c.name for c in want))}) agrees " \
               f"with the reference; what differs comes after `{want[-1].name}`. Look at {steps['*']}."
    return None


def name_a_raise(exercise: str, mine, ref: nn.Module | None, inputs: tuple, what: str) -> None:
    """Run the learner's module once; if it raises and a declared mistake of `exercise` raises the same error on the
    same inputs (some mistakes fail loudly, e.g. a skip of the wrong resolution), fail naming that mistake, with the
    line of the learner's file where it happened. Any other exception goes on to the check's own handling. For a
    function exercise, `mine` is the learner's function and `ref` None (the mistakes are plain functions)."""
    try:
        with seeded(0), torch.no_grad():
            mine(*inputs)
    except Exception as e:  # noqa: BLE001 - the learner's error, to be named when we recognise it
        for m in mistakes(exercise):
            if m.code is None:
                continue
            try:
                with seeded(0), torch.no_grad():
                    m.code(*inputs) if ref is None else m.code(ref, *inputs)
            except Exception as wrong:  # noqa: BLE001
                if type(wrong) is type(e) and str(wrong) == str(e):
                    owner = type(mine).__module__ if isinstance(mine, nn.Module) else getattr(mine, "__module__", "")
                    module = sys.modules.get(owner)
                    where = _raised_in_learners_file(exercise, e, module) if module is not None else None
                    where = where.split(", at ", 1)[1].rstrip(".") if where and ", at " in where else ""
                    raise CheckFailed(f"{what} raised {type(e).__name__}: {str(e).splitlines()[0][:200]}"
                                      + (f" (at {where})" if where else "")
                                      + f". This looks like a common mistake: {m.name}.") from None
        raise


# ---------------------------------------------------------------------------------------------------------------
# Pairs of modules with the same random weights
# ---------------------------------------------------------------------------------------------------------------
NORMS = (nn.LayerNorm, nn.GroupNorm)


def randomize(module: nn.Module, seed: int, std: float = 0.3, norms_only: bool = False) -> nn.Module:
    """Random weights, so that a check can tell every parameter's role apart.

    By default every parameter (zero-initialised ones, and fixed ones like DiT's pos_embed, too) is drawn from
    N(0, std²). With `norms_only`, only the affines of LayerNorm/GroupNorm get std·N(0, 1) added (deep conv
    stacks keep their default init, which keeps their activations in range)."""
    with seeded(seed), torch.no_grad():
        if norms_only:
            for m in module.modules():
                if isinstance(m, NORMS) and getattr(m, "weight", None) is not None:
                    m.weight.add_(std * torch.randn_like(m.weight))
                    m.bias.add_(std * torch.randn_like(m.bias))
        else:
            for p in module.parameters():
                p.normal_(0.0, std)
    return module


def build_pair(impl_cls, ref_cls, *args, seed: int = 0, **kwargs):
    """The learner's module and the reference's, built with the same seed and holding the same weights. The
    learner's `__init__` is given code, so a mismatch of parameter names means the given `__init__` was edited."""
    with seeded(seed):
        ref = ref_cls(*args, **kwargs)
    with seeded(seed):
        mine = impl_cls(*args, **kwargs)
    if not isinstance(mine, nn.Module):
        raise CheckFailed(f"{impl_cls.__name__}(...) should build an nn.Module, got {describe(mine)}.")
    missing = set(ref.state_dict()) ^ set(mine.state_dict())
    if missing:
        raise CheckFailed(f"{impl_cls.__name__}.__init__ should build the same layers as the reference; these "
                          f"parameters differ: {sorted(missing)[:6]}. Hint: write only the method, keep the given "
                          "`__init__` as it is.")
    mine.load_state_dict(ref.state_dict())
    return mine, ref


def random_pair(impl_cls, ref_cls, *args, seed: int = 0, std: float = 0.3, norms_only: bool = False, **kwargs):
    """`build_pair`, then the same random weights in both (see `randomize`)."""
    mine, ref = build_pair(impl_cls, ref_cls, *args, seed=seed, **kwargs)
    randomize(ref, seed + 1000, std, norms_only)
    mine.load_state_dict(ref.state_dict())
    return mine, ref


def compare_forward(mine: nn.Module, ref: nn.Module, inputs: tuple, *, exercise: str | None = None,
                    method: str = "forward", what: str = "the output", atol: float = 1e-5, rtol: float = 1e-4,
                    grads: bool = True, seed: int = 0, hint: str = "", mistakes: dict | None = None,
                    kwargs: dict | None = None, steps: dict[str, str] | None = None):
    """Run `method` of both modules on copies of `inputs` (same seed) and compare the outputs, then the gradients of
    the floating-point inputs and of every parameter for one random cotangent. With `exercise`, the declared
    mistakes of that exercise are run as methods of the reference on the same inputs, to be named when matched.
    With `steps` (submodule name -> what to look at), an output that differs and matches no declared mistake is
    traced through those submodules to name the first step that differs (`first_difference`).
    Returns the reference output."""
    kwargs = kwargs or {}

    def prepare():
        return tuple(x.detach().clone().requires_grad_(grads and x.is_floating_point())
                     if isinstance(x, torch.Tensor) else x for x in inputs)

    ref_in, my_in = prepare(), prepare()
    with seeded(seed):
        want = getattr(ref, method)(*ref_in, **kwargs)
    known = dict(mistakes or {})
    if exercise is not None:
        known.update(wrong_outputs(exercise, *inputs, self=ref, seed=seed, **kwargs))
    with seeded(seed):
        got = getattr(mine, method)(*my_in, **kwargs)
    for i, (a, b) in enumerate(zip(my_in, inputs)):
        if isinstance(b, torch.Tensor) and not torch.equal(a.detach(), b.detach()):
            raise CheckFailed(f"your {method} changed its input {i} in place; the caller still needs it. Hint: "
                              "compute into a new tensor (`x = x + ...`, not `x += ...` or `x[...] = ...`).")
    try:
        expect_close(got, want, what=what, atol=atol, rtol=rtol, hint=hint, mistakes=known)
    except CheckFailed as e:
        where = None
        if steps and "common mistake" not in str(e) and isinstance(got, torch.Tensor) and got.shape == want.shape:
            where = first_difference(mine, ref, inputs, steps, method=method, seed=seed, kwargs=kwargs, atol=atol,
                                     rtol=rtol)
        if where is None:
            raise
        message = str(e).split(" Hint: ")[0]
        more = f" (more: hint(\"{_CURRENT.get()}\"))" if _CURRENT.get() in _HINTS else ""
        raise CheckFailed(f"{message} {where}{more}") from None
    if not grads:
        return want
    with seeded(seed + 1):
        cotangent = torch.randn_like(want)
    (want * cotangent).sum().backward()
    try:
        (got * cotangent).sum().backward()
    except RuntimeError as e:
        raise CheckFailed(f"backpropagating through your {method} failed: {e}. Hint: avoid in-place changes of "
                          "tensors that autograd needs (use `x = x + ...` rather than `x += ...`) and "
                          "`.detach()`.") from None
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


def check_denoiser(mine: nn.Module, ref: nn.Module, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None, *,
                   exercise: str, num_classes: int | None, what: str, hint: str = "", atol: float = 1e-5,
                   rtol: float = 1e-4, seed: int = 0, null_label: bool = True, steps: dict[str, str] | None = None):
    """The checks every denoiser ε_θ(x_t, t, y) shares: forward and backward match the reference (declared mistakes
    named); `y=None` is the null class `num_classes` (when `null_label`); the output depends on t, and on y when
    class-conditional. Returns the reference output."""
    want = compare_forward(mine, ref, (x, t, y), exercise=exercise, what=what, hint=hint, atol=atol, rtol=rtol,
                           seed=seed, steps=steps)
    with torch.no_grad():
        if num_classes and null_label:
            with seeded(seed):
                null = ref(x, t, torch.full_like(t, num_classes))
            with seeded(seed):
                got = mine(x, t, None)
            expect_close(got, null, what=f"{what} with y=None", atol=atol, rtol=rtol,
                         hint="y=None means the null class `num_classes` (the label classifier-free guidance drops "
                              "to).")
        with seeded(seed):
            base = mine(x, t, y)
        with seeded(seed):
            later = mine(x, (t + 397) % 1000, y)
        expect(not _close(later, base, 1e-6, 0), f"{what}: the output does not depend on the timestep t.")
        if num_classes and y is not None:
            with seeded(seed):
                other = mine(x, t, (y + 1) % num_classes)
            expect(not _close(other, base, 1e-6, 0), f"{what}: the output does not depend on the class label y.")
    return want
