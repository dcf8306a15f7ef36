"""The wire between a trusted checker and the learner's sandboxed child: calls go across, values come back.

The checker runs a check unchanged, with `impl` (the learner's module) replaced by a `Remote`: every attribute
read, call, index and iteration on it is a request to the child, which holds the real objects and runs only the
learner's code (and the given code it calls). Both ends are an `Endpoint` over a pair of pipes and speak the same
frames, so the child can call back what the checker passes in (a denoiser given to `ddpm_loss`, a forward hook):

* **Values travel by value**: None, bools, ints, floats, strings, tuples, lists, dicts, slices, dtypes, devices,
  CPU generators (their state) and dense CPU tensors (their bytes, dtype, shape, `requires_grad`, whether a
  Parameter, and a leaf's `.grad`).
  Anything else stays where it lives and travels as a handle, a `Remote` on the other side. A frame is a JSON
  header and raw buffers: nothing received is unpickled or executed.
* **Gradients cross** with `_Bridge`, an autograd Function: a call made with grad enabled keeps its graph on the
  side that ran it; `backward` on this side asks that side for the gradients of the inputs (parameters accumulate
  their `.grad` where they live; reading them later copies them over).
* **Randomness travels with every call**: the caller's torch RNG state goes along, the callee's comes back, so a
  seeded check draws the same numbers as when everything ran in one process.
* **In-place changes come back**: a tensor argument the callee changed in place is copied into the caller's (and
  a generator's new state); a parameter the checker read and then changed in place is written back before its
  next request (`sync`).
* **Exceptions come back** as the same built-in type with the same text; the child adds where in the learner's
  file it was raised (`told`), which the kit quotes as it would in one process.

The checker serves only a narrow set of requests from the child (`TRUSTED_OPS`, public attributes only, no
setattr): the learner's code may call what it was given, never reach into the checker's modules.
"""
from __future__ import annotations

import builtins
import inspect
import json
import os
import struct

import torch
import torch.nn as nn

FRAME_CAP = 64 << 20  # bytes of one frame
ELEMENT_CAP = 1 << 26  # elements of one tensor
DTYPES = {name: getattr(torch, name) for name in ("float16", "bfloat16", "float32", "float64", "int8", "int16",
                                                  "int32", "int64", "uint8", "bool")}
TRUSTED_OPS = {"call", "getattr", "getitem", "len", "bool", "list", "signature", "backward"}  # what a checker serves


class Gone(BaseException):
    """The other end closed the wire or sent something unreadable (a BaseException: no check may swallow it)."""


class Ended(BaseException):
    """The learner's code raised something that ends a check (KeyboardInterrupt); its message is for the learner."""


class Unsendable(TypeError):
    """A value that cannot travel (a sparse or meta tensor, a complex dtype, too many elements)."""


# ---------------------------------------------------------------------------------------------------------------
# Frames: an 8-byte length, a JSON header, the buffers it names
# ---------------------------------------------------------------------------------------------------------------
def _read_exact(fd: int, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise Gone("the other end closed the wire")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def write_frame(fd: int, header: dict, buffers: list[bytes]) -> None:
    header = dict(header, sizes=[len(b) for b in buffers])
    text = json.dumps(header).encode()
    data = b"".join([struct.pack("<Q", len(text)), text, *buffers])
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except (BrokenPipeError, OSError) as e:
            raise Gone(f"the other end is gone ({e})") from None
        view = view[n:]


def read_frame(fd: int) -> tuple[dict, list[bytes]]:
    (n,) = struct.unpack("<Q", _read_exact(fd, 8))
    if n > FRAME_CAP:
        raise Gone("a frame too large came over the wire")
    try:
        header = json.loads(_read_exact(fd, n))
        sizes = header.pop("sizes")
        if type(header) is not dict or type(sizes) is not list or not all(type(s) is int and s >= 0 for s in sizes) \
                or sum(sizes) > FRAME_CAP:
            raise ValueError("bad sizes")
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
        raise Gone(f"an unreadable frame came over the wire ({type(e).__name__})") from None
    return header, [_read_exact(fd, s) for s in sizes]


# ---------------------------------------------------------------------------------------------------------------
# The other side's objects
# ---------------------------------------------------------------------------------------------------------------
class Remote:
    """An object that lives on the other side: attribute reads, calls, indexing and iteration are requests."""

    __slots__ = ("_end", "_handle", "_kind", "__weakref__")

    def __init__(self, end: Endpoint, handle: int, kind: str):
        object.__setattr__(self, "_end", end)
        object.__setattr__(self, "_handle", handle)
        object.__setattr__(self, "_kind", kind)

    def __getattr__(self, name: str):
        if name.startswith("__") and name not in ("__name__", "__qualname__"):
            raise AttributeError(name)
        return self._end.request("getattr", h=self._handle, name=name)

    def __setattr__(self, name: str, value) -> None:
        self._end.request("setattr", h=self._handle, name=name, value=value)

    def __call__(self, *args, **kwargs):
        return self._end.call(self._handle, args, kwargs)

    def __getitem__(self, key):
        return self._end.request("getitem", h=self._handle, key=key)

    def __bool__(self) -> bool:
        return self._end.request("bool", h=self._handle) is True

    def __len__(self) -> int:
        n = self._end.request("len", h=self._handle)
        if type(n) is not int or n < 0:
            raise TypeError("len() of a remote object gave no count")
        return n

    def __iter__(self):
        items = self._end.request("list", h=self._handle)
        if type(items) is not list:
            raise TypeError("a remote object gave no items")
        return iter(items)

    @property
    def __class__(self):  # isinstance(x, nn.Module) holds for a remote module
        return nn.Module if self._kind == "module" else Remote

    @property
    def __signature__(self):
        params = self._end.request("signature", h=self._handle)
        out = []
        for name, kind, has_default in params:
            out.append(inspect.Parameter(str(name), inspect._ParameterKind(int(kind)),
                                         default=None if has_default else inspect.Parameter.empty))
        return inspect.Signature(out)

    def __repr__(self) -> str:
        return f"<{self._kind} in the other process>"


class _Bridge(torch.autograd.Function):
    """A remote call inside autograd: forward runs it over there, backward asks over there for the gradients."""

    @staticmethod
    def forward(ctx, end, box, *tensors):
        value, outs, flags, call = end._call_now(*box, grad=True)
        box.append(value)
        ctx.end, ctx.call, ctx.n = end, call, len(tensors)
        ctx.set_materialize_grads(False)
        marker = torch.zeros(())  # so that a call without tensor outputs still has one
        ctx.mark_non_differentiable(marker, *[o for o, f in zip(outs, flags) if not (f and o.is_floating_point())])
        return (*outs, marker)

    @staticmethod
    def backward(ctx, *grads):
        got = ctx.end.request("backward", call=ctx.call, grads=list(grads))
        if type(got) is not list or len(got) != ctx.n:
            raise Gone("the other side sent gradients that do not fit")
        return (None, None, *got)


def _flat(value, out: list, kinds=(torch.Tensor, nn.Parameter)) -> list:
    """The tensors (or other objects of `kinds`) in `value`, in the order they are encoded."""
    if type(value) in kinds:
        out.append(value)
    elif type(value) in (tuple, list):
        for v in value:
            _flat(v, out, kinds)
    elif type(value) is dict:
        for k, v in value.items():
            _flat(k, out, kinds)
            _flat(v, out, kinds)
    return out


def _refill(value, tensors):
    """`value` with its tensors replaced, in order, by the next ones of the iterator `tensors`."""
    if type(value) in (torch.Tensor, nn.Parameter):
        return next(tensors)
    if type(value) in (tuple, list):
        return type(value)(_refill(v, tensors) for v in value)
    if type(value) is dict:
        return {_refill(k, tensors): _refill(v, tensors) for k, v in value.items()}
    return value


# ---------------------------------------------------------------------------------------------------------------
# One end of the wire
# ---------------------------------------------------------------------------------------------------------------
class Endpoint:
    """One end: sends requests and serves the other end's. `trusted` is the checker's end: it serves only
    `TRUSTED_OPS` on public attributes of the objects it handed out. `told(e)` (the child's end) says where in the
    learner's file an exception was raised."""

    def __init__(self, rfd: int, wfd: int, *, trusted: bool, told=None):
        self.rfd, self.wfd, self.trusted, self.told = rfd, wfd, trusted, told
        self.objects: dict[int, object] = {}  # handle -> what we handed out (kept alive)
        self.handles: dict[int, int] = {}  # id(object) -> handle
        self.remotes: dict[int, Remote] = {}  # the other side's handle -> its Remote here
        self.graphs: dict[int, tuple] = {}  # call -> (outputs, leaves) kept for backward
        self.calls = 0
        self.fetched: list[tuple] = []  # (handle, name, tensor, version): tensors read here from the other side

    # -- values --------------------------------------------------------------------------------------------------
    def handle(self, obj) -> int:
        h = self.handles.get(id(obj))
        if h is None or self.objects.get(h) is not obj:
            h = len(self.objects) + 1
            self.objects[h], self.handles[id(obj)] = obj, h
        return h

    def encode(self, value, buffers: list, depth: int = 0):
        if depth > 50:
            raise Unsendable("a value nested too deeply")
        kind = type(value)
        if value is None or kind in (bool, int, float, str):
            return value
        for base in (bool, int, float, str):  # a subclass (numpy's float64, say) travels as its plain value
            if isinstance(value, base):
                return base(value)
        if kind in (torch.Tensor, nn.Parameter):
            return self._encode_tensor(value, buffers)
        if kind in (tuple, list, torch.Size):
            return {"T" if kind is not list else "L": [self.encode(v, buffers, depth + 1) for v in value]}
        if kind is dict or (isinstance(value, dict) and kind.__module__ == "collections"):
            return {"D": [[self.encode(k, buffers, depth + 1), self.encode(v, buffers, depth + 1)]
                          for k, v in value.items()]}
        if kind is torch.dtype:
            return {"dtype": str(value).removeprefix("torch.")}
        if kind is torch.device:
            return {"device": str(value)}
        if kind is torch.Generator and value.device.type == "cpu":  # travels as its state; the new one comes back
            return {"generator": self._encode_tensor(value.get_state(), buffers)}
        if kind is slice:
            return {"slice": [self.encode(v, buffers, depth + 1) for v in (value.start, value.stop, value.step)]}
        if kind is Remote and value._end is self:
            return {"yours": value._handle}
        return {"mine": self.handle(value), "kind": "module" if isinstance(value, nn.Module) else "object"}

    def _encode_tensor(self, t, buffers: list) -> dict:
        data = t.detach()
        if data.layout != torch.strided or data.is_nested or data.device.type != "cpu":
            raise Unsendable(f"a {data.layout} tensor on {data.device} cannot be sent")
        name = str(data.dtype).removeprefix("torch.")
        if name not in DTYPES:
            raise Unsendable(f"a tensor of dtype {data.dtype} cannot be sent")
        if data.numel() > ELEMENT_CAP:
            raise Unsendable(f"a tensor of {data.numel()} elements cannot be sent")
        raw = data.resolve_conj().resolve_neg().contiguous().reshape(-1).view(torch.uint8)
        buffers.append(raw.numpy().tobytes())
        out = {"t": len(buffers) - 1, "dtype": name, "shape": list(data.shape), "rg": bool(t.requires_grad),
               "p": type(t) is nn.Parameter}
        if t.is_leaf and t.grad is not None:
            out["g"] = self._encode_tensor(t.grad, buffers)
        return out

    def decode(self, value, buffers: list, flags: list | None = None, depth: int = 0):
        """A value from the other side. With `flags`, tensors are not made to require grad: their `requires_grad`
        is appended to `flags` instead (a call's outputs, which `_Bridge` connects)."""
        if depth > 50:
            raise Gone("a value nested too deeply came over the wire")
        if value is None or type(value) in (bool, int, float, str):
            return value
        if type(value) is not dict or len(value) == 0:
            raise Gone("an unknown value came over the wire")
        if "t" in value:
            return self._decode_tensor(value, buffers, flags)
        if "T" in value or "L" in value:
            items = value.get("T", value.get("L"))
            if type(items) is not list:
                raise Gone("an unknown value came over the wire")
            items = [self.decode(v, buffers, flags, depth + 1) for v in items]
            return tuple(items) if "T" in value else items
        if "D" in value:
            pairs = value["D"]
            if type(pairs) is not list or not all(type(p) is list and len(p) == 2 for p in pairs):
                raise Gone("an unknown value came over the wire")
            out = {}
            for k, v in pairs:
                key = self.decode(k, buffers, flags, depth + 1)
                try:
                    out[key] = self.decode(v, buffers, flags, depth + 1)
                except TypeError:
                    raise Gone("an unhashable key came over the wire") from None
            return out
        if "dtype" in value and value["dtype"] in DTYPES:
            return DTYPES[value["dtype"]]
        if "device" in value and value["device"] in ("cpu", "meta"):
            return torch.device(value["device"])
        if "generator" in value and type(value["generator"]) is dict:
            generator = torch.Generator()
            state = self._decode_tensor(value["generator"], buffers, None)
            try:
                generator.set_state(state)
            except (RuntimeError, TypeError, ValueError):
                raise Gone("an unreadable generator came over the wire") from None
            return generator
        if "slice" in value and type(value["slice"]) is list and len(value["slice"]) == 3:
            return slice(*[v if v is None or type(v) is int else None for v in value["slice"]])
        if "yours" in value:
            obj = self.objects.get(value["yours"]) if type(value["yours"]) is int else None
            if obj is None:
                raise Gone("an unknown handle came over the wire")
            return obj
        if "mine" in value and type(value["mine"]) is int:
            h = value["mine"]
            if h not in self.remotes:
                self.remotes[h] = Remote(self, h, "module" if value.get("kind") == "module" else "object")
            return self.remotes[h]
        raise Gone("an unknown value came over the wire")

    def _decode_tensor(self, spec: dict, buffers: list, flags: list | None):
        try:
            dtype, shape, index = DTYPES[spec["dtype"]], spec["shape"], spec["t"]
            if type(shape) is not list or len(shape) > 16 or not all(type(s) is int and s >= 0 for s in shape):
                raise ValueError("shape")
            numel = 1
            for s in shape:
                numel *= s
            raw = buffers[index]
            size = torch.empty((), dtype=dtype).element_size()
            if numel > ELEMENT_CAP or len(raw) != numel * size:
                raise ValueError("size")
            t = torch.frombuffer(bytearray(raw), dtype=dtype).reshape(shape) if numel else torch.empty(shape,
                                                                                                       dtype=dtype)
        except (KeyError, IndexError, ValueError, TypeError, RuntimeError) as e:
            raise Gone(f"an unreadable tensor came over the wire ({type(e).__name__})") from None
        wants = bool(spec.get("rg")) and t.is_floating_point()
        if flags is not None:
            flags.append(wants)
            return t
        if spec.get("p"):
            t = nn.Parameter(t, requires_grad=wants)
        elif wants:
            t.requires_grad_()
        if type(spec.get("g")) is dict:
            grad = self._decode_tensor(spec["g"], buffers, None)
            if grad.shape == t.shape and grad.dtype == t.dtype:
                t.grad = grad
        return t

    # -- requests ------------------------------------------------------------------------------------------------
    def send(self, header: dict, fields: dict) -> None:
        buffers: list[bytes] = []
        header = dict(header, **{k: self.encode(v, buffers) for k, v in fields.items()})
        write_frame(self.wfd, header, buffers)

    def request(self, op: str, **fields):
        """Send a request and serve the other side's nested requests until the answer comes; returns its value."""
        self.sync()
        self.send({"op": op}, fields)
        header, buffers = self._answer()
        value = self.decode(header.get("value"), buffers)
        if op == "getattr" and type(value) in (torch.Tensor, nn.Parameter) and self.trusted:
            self.fetched.append((fields["h"], fields["name"], value, value._version))
        return value

    def sync(self) -> None:
        """Write back the tensors read from the other side (a module's parameters) that were changed here in place
        since (`mine.qkv_temb.weight.zero_()` in a check), so the other side computes with them."""
        if not self.fetched:
            return
        dirty = [f for f in self.fetched if f[2]._version != f[3]]
        if not dirty:
            return
        self.fetched = [f for f in self.fetched if f[2]._version == f[3]]
        for h, name, tensor, _ in dirty:
            self.send({"op": "assign", "h": h, "name": name}, {"value": tensor})
            self._answer()
            self.fetched.append((h, name, tensor, tensor._version))

    def _answer(self) -> tuple[dict, list]:
        while True:
            header, buffers = read_frame(self.rfd)
            if "op" in header:
                self.serve_one(header, buffers)
                continue
            if "error" in header:
                raise self._rebuild(header["error"])
            return header, buffers

    def call(self, handle: int, args: tuple, kwargs: dict):
        """Call the other side's object `handle`; with grad enabled and tensors that need it, through `_Bridge`."""
        inputs = [t for t in _flat([args, kwargs], []) if t.requires_grad]
        if not torch.is_grad_enabled():
            return self._call_now(handle, args, kwargs, grad=False)[0]
        box = [handle, args, kwargs]
        outs = _Bridge.apply(self, box, *inputs, torch.zeros((), requires_grad=True))
        return _refill(box[-1], iter(outs[:-1]))

    def _call_now(self, handle: int, args: tuple, kwargs: dict, *, grad: bool):
        self.sync()
        sent = _flat([args, kwargs], [])
        state = torch.get_rng_state()
        self.send({"op": "call", "h": handle, "grad": grad},
                  {"args": list(args), "kwargs": kwargs, "rng": state,
                   "needs": [bool(t.requires_grad) and grad for t in sent]})
        header, buffers = self._answer()
        flags: list = []
        value = self.decode(header.get("value"), buffers, flags)
        rng = self.decode(header.get("rng"), buffers)
        if type(rng) is torch.Tensor and rng.dtype == torch.uint8 and rng.shape == state.shape:
            torch.set_rng_state(rng)
        changed = self.decode(header.get("changed"), buffers)
        if type(changed) is list:
            for pair in changed:
                if type(pair) is tuple and len(pair) == 2 and type(pair[0]) is int and 0 <= pair[0] < len(sent):
                    target, new = sent[pair[0]], pair[1]
                    if type(new) is torch.Tensor and new.shape == target.shape and new.dtype == target.dtype:
                        with torch.no_grad():
                            target.copy_(new)
        states = self.decode(header.get("generators"), buffers)
        generators = _flat([args, kwargs], [], (torch.Generator,))
        if type(states) is list and len(states) == len(generators):
            for generator, state in zip(generators, states):
                if type(state) is torch.Tensor and state.dtype == torch.uint8:
                    try:
                        generator.set_state(state)
                    except (RuntimeError, TypeError, ValueError):
                        pass
        outs = _flat(value, [])
        return value, outs, flags, header.get("call")

    def _rebuild(self, error) -> BaseException:
        if type(error) is not dict:
            return Gone("an unreadable error came over the wire")
        name, text = str(error.get("type", "Exception"))[:100], str(error.get("text", ""))[:4000]
        if name == "SystemExit":
            return SystemExit(error.get("code") if type(error.get("code")) in (int, str) else None)
        if name == "KeyboardInterrupt":
            return Ended("your code raised KeyboardInterrupt, which ends the check.")
        if name == "CheckTimeout":
            from course.grader.grading import CheckTimeout

            return CheckTimeout()
        cls = getattr(builtins, name, None)
        if not (isinstance(cls, type) and issubclass(cls, Exception)) or name in ("StopIteration",
                                                                                   "StopAsyncIteration"):
            cls = type(name, (RuntimeError,), {})
        try:
            e = cls(text)
        except Exception:  # noqa: BLE001 - a built-in that wants other arguments
            e = type(name, (RuntimeError,), {})(text)
        told = error.get("told")
        e.course_told = told[:4000] if type(told) is str else None
        return e

    # -- serving -------------------------------------------------------------------------------------------------
    def serve(self) -> None:
        """Serve the other side's requests until it closes the wire (the child's main loop)."""
        while True:
            header, buffers = read_frame(self.rfd)
            if "op" not in header:
                raise Gone("an answer came where a request was expected")
            self.serve_one(header, buffers)

    def serve_one(self, header: dict, buffers: list) -> None:
        op = header.get("op")
        try:
            if self.trusted and op not in TRUSTED_OPS:
                raise PermissionError(f"the grader does not serve `{op}`")
            fields = self._serve(op, header, buffers)
        except (Gone, Ended):
            raise
        except BaseException as e:  # noqa: BLE001 - the other side reads whatever was raised here
            if self.trusted and not isinstance(e, Exception):  # the checker's own time limit, Ctrl-C
                raise
            told = None
            if self.told is not None and isinstance(e, Exception):
                try:
                    told = self.told(e)
                except Exception:  # noqa: BLE001
                    told = None
            error = {"type": type(e).__name__, "text": str(e)[:4000], "told": told}
            if isinstance(e, SystemExit):
                error["code"] = e.code if type(e.code) in (int, str) else None
            write_frame(self.wfd, {"error": error}, [])
            return
        header_out, buffers_out = {}, []
        try:
            for k, v in fields.items():
                header_out[k] = v if k == "call" else self.encode(v, buffers_out)
        except Unsendable as e:
            write_frame(self.wfd, {"error": {"type": "TypeError", "text": f"the grader cannot take what your code "
                                                                          f"returned: {e}", "told": None}}, [])
            return
        write_frame(self.wfd, header_out, buffers_out)

    def _target(self, header: dict):
        h = header.get("h")
        if type(h) is not int or h not in self.objects:
            raise LookupError("an unknown handle")
        return self.objects[h]

    def _serve(self, op, header: dict, buffers: list) -> dict:
        if op == "getattr":
            name = header.get("name")
            if type(name) is not str or (self.trusted and name.startswith("_")):
                raise AttributeError(f"the grader does not give out `{name}`")
            return {"value": getattr(self._target(header), name)}
        if op == "assign":
            target = getattr(self._target(header), str(header.get("name")))
            with torch.no_grad():
                target.copy_(self.decode(header.get("value"), buffers))
            return {"value": None}
        if op == "setattr":
            setattr(self._target(header), str(header.get("name")), self.decode(header.get("value"), buffers))
            return {"value": None}
        if op == "getitem":
            return {"value": self._target(header)[self.decode(header.get("key"), buffers)]}
        if op == "len":
            return {"value": len(self._target(header))}
        if op == "bool":
            return {"value": bool(self._target(header))}
        if op == "list":
            return {"value": list(self._target(header))}
        if op == "signature":
            params = inspect.signature(self._target(header)).parameters.values()
            return {"value": [[p.name, int(p.kind), p.default is not p.empty] for p in params]}
        if op == "call":
            return self._serve_call(header, buffers)
        if op == "backward":
            return self._serve_backward(header, buffers)
        raise LookupError(f"unknown request `{op}`")

    def _serve_call(self, header: dict, buffers: list) -> dict:
        fn = self._target(header)
        if self.trusted and not callable(fn):
            raise TypeError("not callable")
        args = self.decode(header.get("args"), buffers)
        kwargs = self.decode(header.get("kwargs"), buffers)
        needs = self.decode(header.get("needs"), buffers)
        rng = self.decode(header.get("rng"), buffers)
        if type(args) is not list or type(kwargs) is not dict or not all(type(k) is str for k in kwargs):
            raise TypeError("a call came with unreadable arguments")
        sent = _flat([args, kwargs], [])
        needs = needs if type(needs) is list and len(needs) == len(sent) else [False] * len(sent)
        leaves = []
        for t, need in zip(sent, needs):
            t.requires_grad_(bool(need) and t.is_floating_point())
            if t.requires_grad:
                leaves.append(t)
        versions = [t._version for t in sent]
        if type(rng) is torch.Tensor and rng.dtype == torch.uint8:
            torch.set_rng_state(rng)
        grad = bool(header.get("grad"))
        with torch.set_grad_enabled(grad):
            value = fn(*args, **kwargs)
        changed = [(i, t.detach()) for i, (t, v) in enumerate(zip(sent, versions)) if t._version != v]
        generators = [g.get_state() for g in _flat([args, kwargs], [], (torch.Generator,))]
        out = {"value": value, "rng": torch.get_rng_state(), "changed": changed, "generators": generators}
        if grad:
            self.calls += 1
            self.graphs[self.calls] = (_flat(value, []), leaves)
            out["call"] = self.calls
        return out

    def _serve_backward(self, header: dict, buffers: list) -> dict:
        call = header.get("call")
        if type(call) is not int or call not in self.graphs:
            raise LookupError("no such call to backpropagate through")
        outs, leaves = self.graphs.pop(call)
        grads = self.decode(header.get("grads"), buffers)
        grads = grads if type(grads) is list else []
        pairs = [(o, g) for o, g in zip(outs, grads)
                 if type(g) is torch.Tensor and o.requires_grad and g.shape == o.shape]
        if pairs:
            with torch.enable_grad():
                torch.autograd.backward([o for o, _ in pairs], [g.to(o.dtype) for o, g in pairs])
        # the caller's _Bridge inputs: its tensors that required grad, then the dummy that makes outputs differentiable
        return {"value": [t.grad for t in leaves] + [None]}


class _Nested(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        with torch.enable_grad():
            w = torch.ones(1, requires_grad=True)
            torch.autograd.backward([(w * 2).sum()], [torch.ones(())])
        return grad


def warm_up() -> None:
    """A backward inside a backward (what the checker does when the learner's code backpropagates through what the
    checker passed in) costs about a second the first time in a process: pay it once, at the checker's start."""
    x = torch.ones(1, requires_grad=True)
    _Nested.apply(x).sum().backward()


# ---------------------------------------------------------------------------------------------------------------
# The two roles
# ---------------------------------------------------------------------------------------------------------------
def serve_module(impl, name: str, rfd: int, wfd: int) -> None:
    """The child's role: offer the learner's module `impl` (loaded for exercise `name`) and serve the checker's
    requests until it closes the wire."""
    from course.grader.checks.kit import _raised_in_learners_file

    end = Endpoint(rfd, wfd, trusted=False, told=lambda e: _raised_in_learners_file(name, e, impl))
    write_frame(wfd, {"ready": end.handle(impl)}, [])
    try:
        end.serve()
    except Gone:
        pass


def refuse(wfd: int, message: str) -> None:
    """The child's answer when the learner's module cannot be checked (it does not import, the exercise is still
    the stub): the message the learner reads."""
    write_frame(wfd, {"failed": str(message)[:4000]}, [])


def check_remote(name: str, rfd: int, wfd: int, timeout: float) -> tuple[bool, str]:
    """The checker's role: run the check of `name` on the module the child offers. Raises Gone when the child ends
    without finishing (the sandbox then says why from outside)."""
    from course.grader.grading import run_check

    header, _ = read_frame(rfd)
    if "failed" in header:
        return False, str(header["failed"])[:4000]
    if type(header.get("ready")) is not int:
        raise Gone("the child did not offer its module")
    end = Endpoint(rfd, wfd, trusted=True)
    try:
        return run_check(name, Remote(end, header["ready"], "object"), timeout)
    except Ended as e:
        return False, str(e)


def check_in_fork(name: str, impl, timeout: float = 60.0) -> tuple[bool, str]:
    """Run the check of `name` with `impl` served by a forked copy of this process (no sandbox, nothing hidden):
    how the tests and the grader's start show that a check gives the same verdicts across the wire."""
    down_r, down_w = os.pipe()
    up_r, up_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(down_w)
            os.close(up_r)
            serve_module(impl, name, down_r, up_w)
        finally:
            os._exit(0)
    os.close(down_r)
    os.close(up_w)
    try:
        return check_remote(name, up_r, down_w, timeout)
    except Gone as e:
        return False, f"the serving process ended: {e}"
    finally:
        os.close(down_w)
        os.close(up_r)
        os.waitpid(pid, 0)
