"""Grading submissions that may be hostile: the learner's code runs in a locked-down child, the check in a trusted one.

`python -m course grade` and `python -m course check --impl DIR --json` use this module; the notebook's `check(...)`
does not (it stays in-process and fast, see `course/grader/grading.py`).

How it works:

* **Snapshot.** `course/` and `solutions/` are copied into the grader's work folder and made read-only; every
  process below imports the course from that copy (`python -I -B`: no PYTHONPATH, no user site, no bytecode).
  `given/` holds what a runner and a child read instead of `solutions/`: the exercise names, the generated stubs,
  and per exercise the module's reference without that exercise's body (`Grader._write_given`).
* **Workers.** Per job (`--jobs`), a `Worker` of two trusted processes (`zygote_main`), joined by a socket: a
  *runner*, which imports torch and the grading code but never the references nor the checks, and forks the
  learner's children; and a *checker*, which imports the checks and the references and never forks. For each
  (submission, exercise) the runner forks a child with a pair of pipes, hands the other ends to the checker
  (SCM_RIGHTS), waits for the child with a wall-clock limit enforced from outside (SIGKILL to the child's session),
  and then kills whatever the child left behind: the runner is the *child subreaper*, so processes that detach
  (double fork, `setsid`) are handed back to it, and it kills its children until none is left.
* **Child.** Starts a new session; stdin is /dev/null, stdout and stderr go to a capped file that nobody parses;
  its working folder is a fresh box holding a copy of the one exercise module it needs; limits on address space
  (`RLIMIT_AS`), file size, CPU time and core dumps; an empty environment; a disk cap on its box, watched from
  outside; as root, no capability left (`drop_privileges`). On Linux ≥ 5.13 it then locks itself with Landlock: it
  may read the system's libraries, the Python installation and the snapshot but the module's reference and the
  checks, write only its box, open no TCP connection, ptrace nothing outside itself and (Linux ≥ 6.12) signal
  nothing outside itself. On x86-64 a seccomp filter then denies changing file modes, owners and times, mounts,
  namespaces, sockets, memfd, SysV and POSIX IPC and (unless allowed) starting processes. Only then is the
  learner's module imported (its other exercises from `given/`); the child then serves the checker's requests
  (`bridge.serve_module`) and runs nothing but the learner's code and the given code it calls.
* **Decision.** The checker runs the course's check unchanged, with `impl` a stand-in whose attribute reads, calls
  and iteration are requests to the child (`course/grader/bridge.py`: tensors by value, other objects as handles,
  gradients, RNG state and in-place changes carried across). The verdict, the message and the time are the
  checker's; a pass that compared nothing is refused. Every check is first dry-run this way on the reference;
  one that cannot run across the pipes is graded the legacy way: a *legacy* zygote (which has imported
  everything) forks a child that runs the whole check, recording every value it compares, and a pass is decided
  again here against the reference's recorded run in float64 (`verify`; nothing a child sends can raise here).
* **Copy flags.** `copy_flags` reads each submitted module's AST in the grader (never running it) and flags code
  that reads the reference or inspects the grader, and bodies equal to the reference's; flags never change a grade.

What stays possible is written in the README ("For instructors", what the sandbox does not stop).
"""
from __future__ import annotations

import json
import os
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unicodedata
import uuid
from dataclasses import dataclass, field
from pathlib import Path

MODULE_CAP = 1 << 20  # bytes of one submitted exercise module
RESULT_CAP = 64 << 20  # bytes of a child's result file (also its RLIMIT_FSIZE)
OUTPUT_TAIL = 2000  # characters kept of a child's stdout and stderr
MESSAGE_CAP = 2000  # characters kept of a message (the CSV keeps fewer, see `clean_text`)
DISK_MB = 256  # megabytes one child may keep in its box (checked from outside every 0.1 s; past it, stopped)
BOX_ENTRIES = 10_000  # files and folders one child may create in its box
DISK_LOW = 64 << 20  # bytes free in the work folder's file system under which a child's missing result is ours
_RECORDS_NOTHING = "the check compares no value the grader could confirm"
_GRADER_FAILED = 117  # a child's exit status when the grader's own code in it failed (before the learner's ran)


# ---------------------------------------------------------------------------------------------------------------
# Text that is safe in a CSV cell, a terminal and a JSON report
# ---------------------------------------------------------------------------------------------------------------
def clean_text(value, cap: int = MESSAGE_CAP) -> str:
    """One line of printable text: control and format characters become spaces, undecodable bytes are written as
    escapes, at most `cap` characters, and a leading =, +, - or @ is quoted (no spreadsheet formulas)."""
    text = str(value).encode("utf-8", "backslashreplace").decode("utf-8", "replace")
    text = "".join(" " if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs") else c for c in text)
    text = " ".join(text.split())
    if len(text) > cap:
        text = text[: cap - 1] + "…"
    if text[:1] in ("=", "+", "-", "@"):
        text = "'" + text
    return text


# ---------------------------------------------------------------------------------------------------------------
# Signs of copying (shown to the instructor, never a grade: the references are public)
# ---------------------------------------------------------------------------------------------------------------
FLAG_IMPORTS = "imports-reference"  # imports or names `solutions/` or the grader's own modules
FLAG_INTROSPECTION = "introspection"  # frames, the garbage collector, sys.modules, exec/eval/compile, marshal
FLAG_SAME = "same-as-reference"  # the exercise's body equals the reference's once names and formatting are normalised
SAME_MIN_NODES = 20  # a reference block smaller than this (a one-line formula) is not flagged for equality
_LOOKING = {"_getframe", "f_back", "f_locals", "f_globals", "f_code", "gi_frame", "tb_frame", "currentframe",
            "getouterframes", "getinnerframes", "get_objects", "get_referrers", "get_referents", "_reference_cache",
            "reference_module", "marshal", "import_module", "spec_from_file_location", "SourceFileLoader", "_REC",
            "_REGISTRY", "__builtins__", "__loader__"}
_LOOKING_BUILTINS = {"exec", "eval", "compile", "__import__", "globals", "vars"}  # as names, not as attributes
_LOOKING_MODULES = {"gc", "inspect", "marshal", "importlib", "ctypes"}


def _mentions_reference(text: str) -> bool:
    return "solutions" in text or "_course_impl" in text or "course.grader" in text or "course/grader" in text


def _suspicious(node) -> str:
    """The flag one AST node raises, or ''."""
    import ast

    if isinstance(node, (ast.Import, ast.ImportFrom)):
        names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) and node.module
                                                 else [])
        if any(_mentions_reference(n) for n in names):
            return FLAG_IMPORTS
        if any(n.split(".")[0] in _LOOKING_MODULES or n in _LOOKING or n in _LOOKING_BUILTINS for n in names):
            return FLAG_INTROSPECTION
    elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _mentions_reference(node.value):
        return FLAG_IMPORTS
    elif isinstance(node, ast.Attribute):
        base = node.value.id if isinstance(node.value, ast.Name) else ""
        if node.attr in _LOOKING or (base == "sys" and node.attr == "modules") or (
                base == "inspect" and node.attr in ("stack", "trace")):
            return FLAG_INTROSPECTION
    elif isinstance(node, ast.Name) and (node.id in _LOOKING or node.id in _LOOKING_BUILTINS):
        return FLAG_INTROSPECTION
    return ""


def _functions(tree) -> dict:
    """{qualname: FunctionDef} of the module's functions and its classes' methods."""
    import ast

    out = {}

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out.setdefault(prefix + child.name, child)
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")

    visit(tree, "")
    return out


def _normalised(fn, lines: tuple[int, int] | None = None) -> tuple[str, int]:
    """The function's body (or its statements within `lines`) as text with docstrings dropped and every argument
    and local name renamed by order of first appearance; and its number of AST nodes."""
    import ast
    import copy

    fn = copy.deepcopy(fn)
    body = [st for st in fn.body if not (isinstance(st, ast.Expr) and isinstance(st.value, ast.Constant)
                                         and isinstance(st.value.value, str))]
    if lines is not None:
        body = [st for st in body if lines[0] < st.lineno < lines[1]]
    local = {a.arg for a in ast.walk(fn.args) if isinstance(a, ast.arg)}
    for node in ast.walk(fn):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            local.add(node.id)
    names: dict[str, str] = {}
    module = ast.Module(body=body, type_ignores=[])
    for node in ast.walk(module):
        if isinstance(node, ast.Name) and node.id in local:
            node.id = names.setdefault(node.id, f"v{len(names)}")
        elif isinstance(node, ast.arg) and node.arg in local:
            node.arg = names.setdefault(node.arg, f"v{len(names)}")
    return ast.dump(module, annotate_fields=False), sum(1 for _ in ast.walk(module))


_REFERENCE_SHAPES: dict[str, tuple[str, int]] = {}


def _reference_shape(name: str) -> tuple[str, int]:
    """The normalised body of exercise `name`'s function (given code and solution block) and the size of its
    solution block, read (never imported) from solutions/."""
    import ast

    from course.grader.exercises import SOLUTIONS_DIR, find_blocks

    if name not in _REFERENCE_SHAPES:
        module = name.split(".", 1)[0]
        source = (SOLUTIONS_DIR / f"{module}.py").read_text()
        block = next(b for b in find_blocks(source, module) if b.exercise == name)
        fn = _functions(ast.parse(source))[block.qualname]
        _REFERENCE_SHAPES[name] = (_normalised(fn)[0], _normalised(fn, (block.begin, block.end))[1])
    return _REFERENCE_SHAPES[name]


def copy_flags(source: bytes | str, module: str, names: list[str]) -> dict[str, list[str]]:
    """{exercise: flags} for the exercises `names` of one submitted module (see FLAG_*). Code that reads the
    reference or inspects the grader flags the exercise whose function holds it, or every exercise when it sits
    elsewhere in the module; a body equal to the reference's (after normalising names and formatting, for blocks of
    at least SAME_MIN_NODES nodes) flags its exercise. A module that does not parse flags nothing."""
    import ast

    out: dict[str, list[str]] = {n: [] for n in names}
    try:
        text = source.decode("utf-8", "replace") if isinstance(source, bytes) else source
        tree = ast.parse(text)
        functions = _functions(tree)
        spans = {}
        for n in names:
            qualname = n.split(".", 1)[1] if "." in n and "/" not in n else None
            fn = functions.get(qualname) if qualname else None
            if fn is not None:
                spans[n] = (fn.lineno, fn.end_lineno)
        for node in ast.walk(tree):
            flag = _suspicious(node)
            if not flag:
                continue
            line = getattr(node, "lineno", 0)
            owners = [n for n, (a, b) in spans.items() if a <= line <= b] or names
            for n in owners:
                if flag not in out[n]:
                    out[n].append(flag)
        for n in names:
            if "/" in n or n not in spans:
                continue
            ref = _reference_shape(n)
            if ref[1] < SAME_MIN_NODES:
                continue
            if _normalised(functions[n.split(".", 1)[1]])[0] == ref[0]:
                out[n].append(FLAG_SAME)
    except (SyntaxError, ValueError, RecursionError, MemoryError, StopIteration, KeyError, OSError):
        pass
    return {n: sorted(f) for n, f in out.items()}


# ---------------------------------------------------------------------------------------------------------------
# Landlock (Linux ≥ 5.13): an unprivileged process restricts what it and its children may touch
# ---------------------------------------------------------------------------------------------------------------
_SYS_CREATE, _SYS_ADD_RULE, _SYS_RESTRICT = 444, 445, 446  # the same number on every architecture
_EXECUTE, _WRITE_FILE, _READ_FILE, _READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_TRUNCATE, _IOCTL_DEV = 1 << 14, 1 << 15


def _libc():
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return ctypes, libc


def landlock_abi() -> int:
    """The Landlock ABI version this kernel offers (0: none)."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        ctypes, libc = _libc()
        abi = libc.syscall(ctypes.c_long(_SYS_CREATE), None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    except (OSError, AttributeError):
        return 0
    return max(int(abi), 0)


def landlock(read: list[str], write: list[str], devices: list[str], listable: list[str] = ()) -> int:
    """Restrict this process for good: read (and execute) only beneath `read`, read and write only beneath `write`,
    read and write the files `devices`, list (not read) the folders beneath `listable`; no TCP; no signals or ptrace
    outside. Returns the ABI used (0: not available, nothing restricted)."""
    abi = landlock_abi()
    if abi < 1:
        return 0
    ctypes, libc = _libc()
    fs = (1 << 13) - 1 | (1 << 13 if abi >= 2 else 0) | (_TRUNCATE if abi >= 3 else 0) | (_IOCTL_DEV if abi >= 5 else 0)
    file_rights = _EXECUTE | _WRITE_FILE | _READ_FILE | (_TRUNCATE if abi >= 3 else 0) | (_IOCTL_DEV if abi >= 5 else 0)

    class RulesetAttr(ctypes.Structure):
        _fields_ = (("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64))

    class PathBeneath(ctypes.Structure):
        _pack_ = 1
        _fields_ = (("allowed", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))

    attr = RulesetAttr(fs, 0b11 if abi >= 4 else 0, 0b11 if abi >= 6 else 0)
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    ruleset = libc.syscall(ctypes.c_long(_SYS_CREATE), ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        return 0

    def allow(path: str, rights: int) -> None:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            return
        try:
            if not stat.S_ISDIR(os.fstat(fd).st_mode):
                rights &= file_rights
            rule = PathBeneath(rights & fs, fd)
            libc.syscall(ctypes.c_long(_SYS_ADD_RULE), ctypes.c_int(ruleset), ctypes.c_int(1), ctypes.byref(rule),
                         ctypes.c_uint32(0))
        finally:
            os.close(fd)

    for path in read:
        allow(path, _EXECUTE | _READ_FILE | _READ_DIR)
    for path in listable:
        allow(path, _READ_DIR)
    for path in devices:
        allow(path, _READ_FILE | _WRITE_FILE)
    for path in write:
        allow(path, fs)
    try:
        if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
            return 0
        done = libc.syscall(ctypes.c_long(_SYS_RESTRICT), ctypes.c_int(ruleset), ctypes.c_uint32(0)) == 0
    finally:
        os.close(ruleset)
    return abi if done else 0


# Syscalls a learner's process never needs and that Landlock does not fence: changing modes, owners, times and
# extended attributes of files (a root or same-user process could otherwise do that to any file), mounts and
# namespaces, tracing, kernel modules and keys, the clock. x86-64 numbers; elsewhere no filter is installed.
_DENIED_X86_64 = (
    90, 91, 92, 93, 94, 260, 268, 452,  # chmod fchmod chown fchown lchown fchownat fchmodat fchmodat2
    132, 235, 261, 280,  # utime utimes futimesat utimensat
    188, 189, 190, 197, 198, 199,  # set/remove xattr
    165, 166, 155, 161, 272, 308, 428, 429, 430, 431, 432, 442,  # mount umount2 pivot_root chroot unshare setns ...
    101, 310, 311, 303, 304, 323,  # ptrace process_vm_{read,write}v name_to/open_by_handle_at userfaultfd
    175, 176, 313, 246, 320, 169, 167, 168, 172, 173,  # modules kexec reboot swap iopl ioperm
    164, 227, 159, 321, 298, 248, 249, 250,  # settimeofday clock_settime adjtimex bpf perf keys
    41,  # socket: no network, no sockets at all
    319, 447,  # memfd_create memfd_secret: memory outside RLIMIT_AS
    29, 30, 31, 64, 65, 66, 68, 69, 70, 71, 220,  # SysV shared memory, semaphores, messages: they outlive a process
    240, 241, 242, 243, 244, 245,  # POSIX message queues
)


def seccomp_deny(processes: bool = False) -> bool:
    """Install a seccomp filter that makes the syscalls in `_DENIED_X86_64` fail with EPERM, and, unless
    `processes`, creating processes too (threads stay allowed). x86-64 Linux only; returns whether installed."""
    import platform

    if not sys.platform.startswith("linux") or platform.machine() not in ("x86_64", "AMD64"):
        return False
    ctypes, libc = _libc()

    class Instr(ctypes.Structure):
        _fields_ = (("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32))

    class Prog(ctypes.Structure):
        _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Instr)))

    load, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    # (code, jump if true, jump if false, k); jumps name a label or are 0 (the next instruction)
    code = [(load, 0, 0, 4), (jeq, 0, "allow", 0xC000003E), (load, 0, 0, 0), (jge, "deny", 0, 0x40000000)]
    code += [(jeq, "deny", 0, nr) for nr in sorted(set(_DENIED_X86_64))]
    if not processes:
        code += [(jeq, "deny", 0, 57), (jeq, "deny", 0, 58), (jeq, "nosys", 0, 435), (jeq, 0, "allow", 56),
                 (load, 0, 0, 16), (jset, "allow", "deny", 0x00010000)]  # clone: only with CLONE_THREAD
    labels = {"allow": len(code), "deny": len(code) + 1, "nosys": len(code) + 2}
    code += [(ret, 0, 0, 0x7FFF0000), (ret, 0, 0, 0x00050000 | 1), (ret, 0, 0, 0x00050000 | 38)]

    def offset(i: int, target) -> int:
        return labels[target] - i - 1 if isinstance(target, str) else target

    program = (Instr * len(code))(*[Instr(c, offset(i, t), offset(i, f), k) for i, (c, t, f, k) in enumerate(code)])
    prog = Prog(len(code), program)
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        return False
    return libc.prctl(22, 2, ctypes.byref(prog), 0, 0) == 0  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER


def drop_privileges() -> str:
    """As root, give up every capability for good: the bounding and ambient sets emptied, the securebits that make
    uid 0 special set and locked, then no effective, permitted or inheritable capability. The user stays uid 0 (the
    Python installation may sit where only root can read, e.g. /root), but without capabilities root is only the
    owner of root's files: it cannot skip Landlock's ptrace scoping, read other processes' /proc/<pid>/environ or
    maps outside its Landlock domain, change owners, or raise a limit. Returns what was done."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return "unprivileged user"
    ctypes, libc = _libc()
    libc.unshare(0x08000000)  # CLONE_NEWIPC: SysV objects and POSIX queues die with the child (where seccomp is absent)
    for cap in range(64):
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP, until EINVAL past the last capability
            break
    libc.prctl(47, 4, 0, 0, 0)  # PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL
    libc.prctl(28, 0xEF, 0, 0, 0)  # PR_SET_SECUREBITS: NOROOT, NO_SETUID_FIXUP, NO_CAP_AMBIENT_RAISE, all locked
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS: no execve (setuid, file capabilities) gives any back
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS failed")

    class Header(ctypes.Structure):
        _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))

    class Data(ctypes.Structure):
        _fields_ = (("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32))

    header, data = Header(0x20080522, 0), (Data * 2)()  # _LINUX_CAPABILITY_VERSION_3: all zero
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")
    with open("/proc/self/status") as f:
        caps = {line.split(":")[0]: int(line.split()[1], 16) for line in f if line.startswith("Cap")}
    if caps.get("CapEff") or caps.get("CapPrm") or caps.get("CapAmb"):  # a bounding set left (no CAP_SETPCAP in a
        raise OSError(f"capabilities left after dropping them: {caps}")  # container) grants nothing: no_new_privs
    return "root without capabilities"


def set_subreaper() -> bool:
    """Become the child subreaper: orphaned descendants are re-parented to this process, not to init."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        _, libc = _libc()
        return libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc; nothing where there is no /proc)."""
    if pid == os.getpid():  # one read per thread where the kernel lists children (CONFIG_PROC_CHILDREN)
        try:
            kids = []
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    kids += [int(k) for k in f.read().split()]
            return kids
        except (OSError, ValueError):
            pass
    out = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return out
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            if int(fields[1]) == pid:
                out.append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    return out


def kill_children(pid: int | None = None, rounds: int = 100) -> int:
    """SIGKILL and reap every child of `pid` (default: this process), again and again while orphans keep being
    re-parented to it. Returns how many were killed."""
    pid = os.getpid() if pid is None else pid
    killed = 0
    for _ in range(rounds):
        kids = _children(pid)
        if not kids:
            break
        for kid in kids:
            try:
                os.kill(kid, signal.SIGKILL)
                killed += 1
            except OSError:
                pass
        for kid in kids:
            try:
                os.waitpid(kid, 0)
            except ChildProcessError:
                pass
    return killed


# ---------------------------------------------------------------------------------------------------------------
# Recording what a check compares (installed in the zygote, before the checks are imported)
# ---------------------------------------------------------------------------------------------------------------
class _Recording:
    def __init__(self):
        self.mode: str | None = None  # "trusted": record what the reference expects; "learner": what came back
        self.items: list = []
        self.depth = 0


_REC = _Recording()


def _plain(x):
    import torch

    if type(x) in (torch.Tensor, torch.nn.Parameter):
        return torch.Tensor.detach(x).clone()
    return None


def _hook_kit() -> None:
    import inspect

    import torch

    from course.grader import grading
    from course.grader.checks import kit

    def wrap(name, original):
        signature = inspect.signature(original)

        def hooked(*args, **kwargs):
            if _REC.mode == "count":  # the checker: how many comparisons a check made, nothing else
                _REC.items.append(None) if _REC.depth == 0 else None
                _REC.depth += 1
                try:
                    return original(*args, **kwargs)
                finally:
                    _REC.depth -= 1
            if _REC.mode is not None and _REC.depth == 0:
                try:
                    bound = signature.bind(*args, **kwargs)
                    bound.apply_defaults()
                    a = bound.arguments
                    if _REC.mode == "learner":
                        _REC.items.append(_plain(a["got"]))
                    elif name == "confirm":
                        got = a["got"]
                        _REC.items.append({"kind": "rule", "what": str(a["what"]), "rule": str(a["rule"]),
                                           "params": {k: _plain(v) if isinstance(v, torch.Tensor) else v
                                                      for k, v in a["params"].items()},
                                           "shape": [int(n) for n in got.shape], "dtype": str(got.dtype)})
                    elif name == "expect_close":
                        _REC.items.append({"kind": "close", "what": str(a["what"]), "atol": float(a["atol"]),
                                           "rtol": float(a["rtol"]), "check_dtype": bool(a["check_dtype"]),
                                           "want": _plain(a["want"])})
                    else:
                        like, shape, dtype, device = a["like"], a["shape"], a["dtype"], a["device"]
                        if like is not None:
                            shape = tuple(like.shape) if shape is None else shape
                            dtype = like.dtype if dtype is None else dtype
                            device = like.device if device is None else device
                        _REC.items.append({"kind": "tensor", "what": str(a["what"]),
                                           "shape": None if shape is None else [int(s) for s in shape],
                                           "dtype": None if dtype is None else str(dtype),
                                           "device": None if device is None else torch.device(device).type,
                                           "finite": bool(a["finite"])})
                except TypeError:
                    _REC.items.append(None)
            _REC.depth += 1
            try:
                result = original(*args, **kwargs)
            finally:
                _REC.depth -= 1
            if _REC.mode is not None and _REC.depth == 0:
                # Random inputs a check draws after this point are the same in the reference's run and the
                # learner's, however much randomness the learner's code consumed before it.
                torch.manual_seed(1_000_003 + len(_REC.items))
            return result

        hooked.__wrapped__ = original
        hooked.__doc__ = original.__doc__
        return hooked

    for name in ("expect_close", "expect_tensor"):
        setattr(kit, name, wrap(name, getattr(kit, name)))
    grading.confirm = wrap("confirm", grading.confirm)


# ---------------------------------------------------------------------------------------------------------------
# The zygote and its children (trusted code; runs from the read-only snapshot)
# ---------------------------------------------------------------------------------------------------------------
def _readable_roots(snapshot: str, fence: str | None = None, exercise: str | None = None) -> list[str]:
    """What a child may read. With `fence` (the module under test), the snapshot's `solutions/` is readable only
    file by file, and not that module's reference (`<fence>.py`, its bytecode): the learner's code cannot import,
    exec or unmarshal the reference it is compared with (the other modules' references stay readable, since the
    learner's file imports them). With `exercise`, its folder of `given/` is readable too: the module's reference
    with that exercise's body left out, which supplies the module's other exercises."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, snapshot,
             os.path.dirname(os.path.realpath(sys.executable))}
    roots.update(p for p in sys.path if p and os.path.isdir(p))
    roots.update(["/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc", "/proc", "/sys", "/dev"])
    if fence is not None:
        top = os.path.realpath(snapshot)
        roots = {r for r in roots if os.path.commonpath([os.path.realpath(r), top]) != top}
        if exercise is None:
            roots.update(os.path.join(snapshot, d) for d in ("course", "extra"))
        else:  # the course without its checks (their helpers and declared mistakes), and this exercise's given code
            roots.update(_course_without_checks(os.path.join(snapshot, "course")))
            if "/" not in exercise:
                roots.add(os.path.join(snapshot, "given", exercise))
        solutions = os.path.join(snapshot, "solutions")
        for folder in (solutions, os.path.join(solutions, "__pycache__")):
            try:
                names = os.listdir(folder)
            except OSError:
                continue
            roots.update(os.path.join(folder, n) for n in names if n.split(".", 1)[0] != fence
                         and n != "__pycache__")
    return sorted(r for r in roots if os.path.exists(r))


def _course_without_checks(course: str) -> list[str]:
    """Everything beneath the snapshot's `course/` but the checks' modules (the kit stays: the child uses it)."""
    grader, checks = os.path.join(course, "grader"), os.path.join(course, "grader", "checks")
    out = []
    for folder, skip in ((course, "grader"), (grader, "checks")):
        try:
            out += [os.path.join(folder, n) for n in os.listdir(folder) if n != skip]
        except OSError:
            pass
    keep = ("__init__.", "kit.")
    for folder in (checks, os.path.join(checks, "__pycache__")):
        try:
            out += [os.path.join(folder, n) for n in os.listdir(folder) if n.startswith(keep)]
        except OSError:
            pass
    return out


def _vm_size() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _close_fds(keep: tuple = ()) -> None:
    """Close every file descriptor from 3 up but those in `keep`."""
    try:
        fds = [int(fd) for fd in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(3, 1 << 16))
    for fd in fds:
        if fd >= 3 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _lock_down(req: dict, snapshot: str, keep: tuple = ()) -> Path:
    """In a forked child, before any learner code: a new session, /dev/null as stdin, stdout and stderr into the
    box's capped file, no descriptor left but `keep`, an empty environment, the limits, no privileges, Landlock and
    seccomp. Returns the child's working folder."""
    import resource

    os.setsid()
    box = Path(req["box"])
    out = os.open(box / "output.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    _close_fds(keep)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the file size limit fails instead of killing
    if keep:
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # a checker gone is a failed write, not a death
    work = box / "work"
    os.chdir(work)
    os.environ.clear()
    os.environ.update(HOME=str(work), TMPDIR=str(box / "tmp"), PATH="/usr/bin:/bin", LANG="C.UTF-8",
                      OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    tempfile.tempdir = str(box / "tmp")
    limits = [(resource.RLIMIT_CORE, 0), (resource.RLIMIT_FSIZE, RESULT_CAP),
              (resource.RLIMIT_CPU, int(req["hard_timeout"]) + 5)]
    if req.get("memory_mb"):
        limits.append((resource.RLIMIT_AS, _vm_size() + int(req["memory_mb"]) * 2**20))
    for which, value in limits:
        try:
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError):
            pass
    try:
        drop_privileges()
    except OSError as e:  # never run the learner's code with a capability
        os.write(2, f"the grader could not drop its privileges: {e}\n".encode())
        os._exit(_GRADER_FAILED)
    learner = req["mode"] in ("learner", "serve")
    fence = req["exercise"].split("/", 1)[0].split(".", 1)[0] if learner else None
    serving = req["mode"].startswith("serve")
    landlock(_readable_roots(snapshot, fence, req["exercise"] if serving else None), [str(box)],
             ["/dev/null", "/dev/zero", "/dev/urandom", "/dev/random"],
             listable=[os.path.join(snapshot, "course")] if serving else [])
    seccomp_deny(processes=bool(req.get("processes")))
    return work


def _serve_child(req: dict, snapshot: str, rfd: int, wfd: int) -> None:
    """In the forked child of a runner (which never imported the references or the checks): lock down, import the
    learner's module (its other exercises from `given/`, the reference without this exercise's body), and serve
    the checker's requests over the pipes `rfd`/`wfd` until it closes them. The checks, the reference of this
    exercise and every expected value live in the checker, another process."""
    work = _lock_down(req, snapshot, keep=(rfd, wfd))
    from course.grader import bridge, grading

    name = req["exercise"]
    module = name.split("/", 1)[0].split(".", 1)[0]
    directory = work if req["mode"] == "serve" else Path(snapshot) / "solutions"  # or "serve-trusted": a dry run
    given = None if "/" in name else Path(snapshot) / "given" / name / f"{module}.py"
    timeout = float(req["timeout"])
    impl, problem = grading.load_exercise(name, directory, timeout, given)
    (Path(req["box"]) / "loaded").touch()
    problem = problem or grading.not_started(impl, name)
    try:
        if problem:
            bridge.refuse(wfd, grading._clean(problem))
            return
        with grading.time_limit(timeout + 1.0):  # the checker's own limit (timeout) comes first when it waits
            bridge.serve_module(impl, name, rfd, wfd)
    except (bridge.Gone, grading.CheckTimeout):
        pass


def _child(req: dict, snapshot: str) -> None:
    """In the forked child: lock down, then run one check and write its result into the box. Never returns."""
    work = _lock_down(req, snapshot)
    box = Path(req["box"])
    import torch

    from course.grader import grading
    from course.grader.exercises import SOLUTIONS_DIR

    payload: dict
    _REC.mode, _REC.items, _REC.depth = req["mode"], [], 0
    directory = SOLUTIONS_DIR if req["mode"] == "trusted" else work
    try:
        r = grading.run_exercise(req["exercise"], directory, timeout=float(req["timeout"]),
                                 on_loaded=lambda: (box / "loaded").touch())
        payload = {"passed": bool(r.passed), "message": str(r.message)[:MESSAGE_CAP], "seconds": float(r.seconds)}
    except KeyboardInterrupt:
        payload = {"passed": False, "message": "your code raised KeyboardInterrupt, which ends the check.",
                   "seconds": 0.0}
    except BaseException as e:  # noqa: BLE001 - whatever ends the check is a failure of this exercise
        payload = {"passed": False, "message": f"the check was ended by {type(e).__name__}.", "seconds": 0.0}
    mode, items = _REC.mode, list(_REC.items)
    _REC.mode = None
    payload["items"] = items
    payload["mode"] = mode
    tmp = box / f"result-{os.getpid()}.tmp"
    try:
        torch.save(payload, tmp)
        os.replace(tmp, box / "result.pt")
    except OSError as e:
        import errno

        if e.errno in (errno.ENOSPC, errno.EDQUOT):  # the disk, not the code under test
            os._exit(_GRADER_FAILED)
        raise


def _free_bytes(path: str) -> int:
    try:
        st = os.statvfs(path)
        return st.f_bavail * st.f_frsize
    except OSError:
        return 0


def _over_cap(box: str, cap: int, pid: int) -> str:
    """Why the box holds too much (more than `cap` bytes on disk, counting the deleted files process `pid` still
    holds open, or more than `BOX_ENTRIES` entries), or ''."""
    used, entries, stack = 0, 0, [box]
    try:
        for fd in os.listdir(f"/proc/{pid}/fd")[:4096]:
            try:
                info = os.stat(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode) and info.st_nlink == 0:
                used += info.st_blocks * 512
    except OSError:
        pass
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    entries += 1
                    if entries > BOX_ENTRIES:
                        return f"created more than {BOX_ENTRIES} files and folders"
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    used += info.st_blocks * 512
                    if stat.S_ISDIR(info.st_mode):
                        stack.append(entry.path)
        except OSError:
            continue
    return f"kept more than {cap >> 20} MB on disk" if used > cap else ""


def _kill_session(pid: int) -> None:
    """SIGKILL the session (process group) a child started, and the child itself."""
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _send(channel, message: dict) -> None:
    channel.write((json.dumps(message) + "\n").encode())
    channel.flush()


def _not_dumpable() -> None:
    try:
        _, libc = _libc()
        libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: same-uid processes cannot read or write our memory
    except (OSError, AttributeError):
        pass


def _load_checks(extra: str) -> list[str]:
    """Import the course's checks and the instructor's extra ones; returns the extras' names. Raises ValueError for
    an extra check not named `module/label`."""
    from course.grader import grading
    from course.grader.exercises import modules

    grading.registry()
    extras = []
    if extra and os.path.isdir(extra):
        import importlib.util

        before = set(grading._REGISTRY)
        for path in sorted(Path(extra).glob("*.py")):
            spec = importlib.util.spec_from_file_location(f"course_extra_checks_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
        extras = [n for n in grading._REGISTRY if n not in before]
        bad = [n for n in extras if "/" not in n or n.split("/", 1)[0] not in modules()]
        if bad:
            raise ValueError(f"extra checks must be named `module/label` with an exercise module: {bad}")
    return extras


def _trusted_imports(channel, extra: str) -> list[str] | None:
    """What a trusted process that runs checks imports first: the kit's hooks, the checks (the course's and the
    instructor's extra ones) and every reference. Returns the extras' names, or None after sending the error of an
    extra check that is not named `module/label`."""
    from course.grader.exercises import modules, reference_module

    _hook_kit()
    try:
        extras = _load_checks(extra)
    except ValueError as e:
        _send(channel, {"error": str(e)})
        return None
    for module in modules():
        reference_module(module)
    return extras


def zygote_main(snapshot: str, extra: str = "", role: str = "legacy", wire: str = "") -> None:
    """A trusted worker, answering JSON lines on stdin on its original stdout (its own prints go to stderr). Its
    `role`:

    * `runner`: forks the learner's children and never imports the references or the checks. For each request it
      forks a child (`_serve_child`) with a pair of pipes, hands the other ends to its checker over the socket
      `wire` (SCM_RIGHTS), enforces the child's limits and cleans up after it.
    * `checker`: imports the checks and the references and never forks; runs each check with the learner's module
      across the pipes the runner handed over (`bridge.check_remote`).
    * `legacy`: imports everything and forks children that run the whole check in the learner's process, recording
      the values it compares (for a check that does not run across the pipes, see `Grader`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the grader ends us; Ctrl-C is the grader's to handle
    channel = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    import torch

    torch.set_num_threads(1)
    if role == "checker":
        return _checker_main(channel, extra, int(wire))
    extras: list[str] = []
    if role == "legacy":
        loaded = _trusted_imports(channel, extra)
        if loaded is None:
            return
        extras = loaded
        _read_solutions_once()
    else:
        import socket

        from course.grader import bridge  # noqa: F401 - imported once here, not in every child
        from course.grader.checks import kit  # noqa: F401 - the kit only: no check, no reference

        _read_given(snapshot)
        _warm_runner(snapshot)
        wire_socket = socket.socket(fileno=int(wire))
    set_subreaper()
    _not_dumpable()
    holds = _references_held(snapshot) if role == "runner" else []
    _send(channel, {"ready": True, "extras": extras, "landlock": landlock_abi(), "holds": holds})
    for line in sys.stdin.buffer:
        try:
            req = json.loads(line)
        except ValueError:
            continue
        sys.stdout.flush()
        sys.stderr.flush()
        start = time.monotonic()
        serving = req["mode"].startswith("serve")
        if serving:
            down_r, down_w = os.pipe()
            up_r, up_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                if serving:
                    _serve_child(req, snapshot, down_r, up_w)
                else:
                    _child(req, snapshot)
            finally:
                os._exit(0)
        if serving:
            try:
                socket.send_fds(wire_socket, [str(req["token"]).encode()], [up_r, down_w])
            except OSError:
                _kill_session(pid)
            for fd in (down_r, down_w, up_r, up_w):
                os.close(fd)
        _send(channel, {"pid": pid})
        deadline = start + float(req["hard_timeout"])
        killed, status, pause, disk, min_free, watched = False, 0, 0.001, "", _free_bytes(req["box"]), start
        cap = int(req.get("disk_mb") or DISK_MB) << 20
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            now = time.monotonic()
            if now - watched > 0.1:
                watched = now
                min_free = min(min_free, _free_bytes(req["box"]))
                disk = _over_cap(req["box"], cap, pid)
                if disk:
                    _kill_session(pid)
                    _, status = os.waitpid(pid, 0)
                    break
            if now > deadline:
                killed = True
                _kill_session(pid)
                _, status = os.waitpid(pid, 0)
                break
            time.sleep(pause)
            pause = min(pause * 1.5, 0.02)
        wall = time.monotonic() - start
        min_free = min(min_free, _free_bytes(req["box"]))
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
        left = kill_children()
        signalled = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
        _send(channel, {"killed": killed, "signal": signalled, "code": code, "wall": wall, "left": left,
                        "disk": disk, "low_disk": min_free < DISK_LOW})
    kill_children()


def _checker_main(channel, extra: str, wire: int) -> None:
    """The checker's loop: for each request, take the pipes of the child the runner forked (matched by token) and
    run the check across them; answer passed, message, seconds, or ended (the child ended first)."""
    import socket

    from course.grader import bridge, grading

    extras = _trusted_imports(channel, extra)
    if extras is None:
        return
    bridge.warm_up()
    wire_socket = socket.socket(fileno=wire)
    _not_dumpable()
    _send(channel, {"ready": True, "extras": extras, "landlock": landlock_abi()})
    for line in sys.stdin.buffer:
        try:
            req = json.loads(line)
        except ValueError:
            continue
        fds = _take_pipes(wire_socket, str(req["token"]), float(req["hard_timeout"]))
        if fds is None:
            _send(channel, {"grader_error": "no pipes came from the runner"})
            continue
        rfd, wfd = fds
        start = time.perf_counter()
        _REC.mode, _REC.items, _REC.depth = "count", [], 0
        try:
            passed, message = bridge.check_remote(req["exercise"], rfd, wfd, float(req["timeout"]))
            answer = {"passed": bool(passed), "message": grading._clean(str(message))[:MESSAGE_CAP],
                      "compared": len(_REC.items)}
        except bridge.Gone:
            answer = {"ended": True}
        except Exception as e:  # noqa: BLE001 - the checker's own failure: not graded, never blamed on the learner
            answer = {"grader_error": clean_text(f"{type(e).__name__}: {e}", 300)}
        finally:
            _REC.mode = None
            os.close(rfd)
            os.close(wfd)
        answer["seconds"] = time.perf_counter() - start
        _send(channel, answer)


def _take_pipes(wire, token: str, timeout: float) -> tuple[int, int] | None:
    """The two pipe ends the runner sent with `token` (older ones, of a request that failed, are closed)."""
    import socket

    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([wire], [], [], left)[0]:
            return None
        message, fds, _, _ = socket.recv_fds(wire, 256, 4)
        if message.decode(errors="replace") == token and len(fds) == 2:
            return fds[0], fds[1]
        for fd in fds:
            os.close(fd)
        if not message:
            return None


def _references_held(snapshot: str) -> list[str]:
    """The modules this process has imported from the snapshot's `solutions/` or `given/` or from the checks (the
    kit aside): a runner must hold none, or its children would hold them too."""
    top = Path(snapshot).resolve()
    fenced = [top / "solutions", top / "given", top / "course" / "grader" / "checks"]
    held = []
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if not isinstance(path, str) or Path(path).name in ("kit.py", "__init__.py"):
            continue
        if any(Path(path).resolve().is_relative_to(f) for f in fenced):
            held.append(name)
    return sorted(held)


def _warm_runner(snapshot: str) -> None:
    """Import once, in the runner, what every child would otherwise import again: the libraries the exercise modules
    import (read from the stubs, never from the references: einops, the lab, ...) and what torch imports lazily on a
    first backward with given gradients (sympy, 0.4 s). Generic code only: no reference, no check."""
    import ast
    import importlib

    import torch

    x = torch.ones(2, requires_grad=True)
    torch.autograd.backward([(x * 2).sum()], [torch.ones(())])
    for stub in sorted((Path(snapshot) / "given" / "stubs").glob("*.py")):
        for node in ast.parse(stub.read_text()).body:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else []
            for name in names:
                try:
                    importlib.import_module(name)
                except Exception:  # noqa: BLE001 - a child that needs it imports it (and fails) itself
                    pass


def _read_given(snapshot: str) -> None:
    """The runner's view of the exercises, from the snapshot's `given/` (never from `solutions/`): the exercise
    names and the generated stubs' code (to tell an untouched stub)."""
    from course.grader import exercises, grading

    given = Path(snapshot) / "given"
    table = json.loads((given / "exercises.json").read_text())

    def cached(module: str | None = None) -> list[str]:
        return list(table[module]) if module else [n for names in table.values() for n in names]

    exercises.exercises = grading.exercises = cached
    grading.student_source = lambda module: (given / "stubs" / f"{module}.py").read_text()
    for names in table.values():
        for name in names:
            grading._generated_stub_code(name)


def _read_solutions_once() -> None:
    """Everything the grading code reads from solutions/ at run time, read here once (the learner's child may not
    read its module's reference): the exercise names and the generated stubs' code."""
    from course.grader import exercises, grading

    table = {m: exercises.exercises(m) for m in exercises.modules()}

    def cached(module: str | None = None) -> list[str]:
        return list(table[module]) if module else [n for names in table.values() for n in names]

    exercises.exercises = grading.exercises = cached
    exercises._stub_messages()
    for names in table.values():
        for name in names:
            grading._generated_stub_code(name)


BOOT = ("import sys; sys.path.insert(0, sys.argv[1]); "
        "from course.grader.sandbox import zygote_main; zygote_main(*sys.argv[1:])")


# ---------------------------------------------------------------------------------------------------------------
# The grader's side
# ---------------------------------------------------------------------------------------------------------------
class GraderProblem(RuntimeError):
    """Something went wrong in the grader itself (not in a submission)."""


class Zygote:
    """One worker process (`zygote_main`) of a `role`; `wire` is its end of the runner-checker socket."""

    def __init__(self, root: Path, snapshot: Path, extra: str, startup: float = 300.0, role: str = "legacy",
                 wire: int | None = None, wait: bool = True):
        keep = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "COURSE_PROFILE")
        env = {k: os.environ[k] for k in keep if k in os.environ}
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        self.log_path = root / f"{role}-{uuid.uuid4().hex[:8]}.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-B", "-c", BOOT, str(snapshot), extra, role, str(wire or "")], stdin=-1,
                stdout=-1, stderr=log, cwd=root, env=env, start_new_session=True, bufsize=0,
                pass_fds=(wire,) if wire is not None else ())
        self.buffer = b""
        self.current: int | None = None
        self.startup = startup
        if wait:
            self.hello()

    def hello(self) -> None:
        """Wait until the worker has imported what it needs and says it is ready."""
        hello = self._read(self.startup)
        if "error" in hello or not hello.get("ready"):
            self.close()
            raise GraderProblem(hello.get("error") or f"the grader's worker did not start; see {self.log_path}")
        self.extras: list[str] = hello.get("extras", [])
        self.landlock: int = hello.get("landlock", 0)
        self.holds: list[str] = hello.get("holds", [])

    def _read(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise GraderProblem("the grader's worker stopped answering")
            chunk = os.read(fd, 65536)
            if not chunk:
                tail = self.log_path.read_text(errors="replace")[-1500:] if self.log_path.exists() else ""
                raise GraderProblem(f"the grader's worker ended: {tail.strip()}")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        try:
            return json.loads(line)
        except ValueError as e:
            raise GraderProblem(f"the grader's worker answered something unreadable: {e}") from e

    def write(self, req: dict) -> None:
        try:
            self.proc.stdin.write((json.dumps(req) + "\n").encode())
            self.proc.stdin.flush()
        except OSError as e:
            raise GraderProblem(f"the grader's worker is gone: {e}") from e

    def run(self, req: dict) -> dict:
        self.write(req)
        self.current = self._read(60)["pid"]
        try:
            return self._read(float(req["hard_timeout"]) + 60)
        finally:
            self.current = None

    def close(self, force: bool = False) -> None:
        if force and self.current:
            _kill_session(self.current)
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(0.5 if force else 30)
        except Exception:  # noqa: BLE001 - a worker that does not end is killed
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


class Worker:
    """One job's processes: a runner that forks the learner's children and never imports the references, and a
    checker that runs the checks across the pipes (joined by a socket over which the runner hands the pipes); a
    legacy zygote only when a check cannot run across the pipes (started on first use)."""

    def __init__(self, root: Path, snapshot: Path, extra: str):
        import socket

        self.root, self.snapshot, self.extra = root, snapshot, extra
        self.legacy: Zygote | None = None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.runner = self.checker = None
        try:
            self.runner = Zygote(root, snapshot, extra, role="runner", wire=ours.fileno(), wait=False)
            self.checker = Zygote(root, snapshot, extra, role="checker", wire=theirs.fileno(), wait=False)
            self.runner.hello()
            self.checker.hello()
            if self.runner.holds:  # never fork learner children from a process that holds the references
                raise GraderProblem(f"the runner imported the references or the checks: {self.runner.holds[:5]}")
        except BaseException:
            self.close(force=True)
            raise
        finally:
            ours.close()
            theirs.close()
        self.extras, self.landlock = self.checker.extras, self.runner.landlock
        self.current: int | None = None

    def run(self, req: dict) -> dict:
        """A request in legacy mode goes to the legacy zygote; one to serve goes to the runner, its check to the
        checker: the runner's status on the child, with `result` the checker's answer."""
        if not req["mode"].startswith("serve"):
            if self.legacy is None:
                self.legacy = Zygote(self.root, self.snapshot, self.extra)
            return self.legacy.run(req)
        req = dict(req, token=uuid.uuid4().hex)
        self.runner.write(req)
        self.current = self.runner.current = self.runner._read(60)["pid"]
        try:
            self.checker.write({k: req[k] for k in ("exercise", "token", "timeout", "hard_timeout")})
            result = self.checker._read(float(req["hard_timeout"]) + 60)
            status = self.runner._read(float(req["hard_timeout"]) + 60)
        finally:
            self.current = self.runner.current = None
        return dict(status, result=result)

    def close(self, force: bool = False) -> None:
        for z in (self.runner, self.checker, self.legacy):
            if z is not None:
                z.close(force=force)


@dataclass
class Row:
    submission: str
    exercise: str
    passed: bool
    message: str
    seconds: float = 0.0
    verified: bool = False  # the pass was re-decided by the grader from the recorded values
    output: str = ""  # the tail of what the learner's code printed (never parsed)
    flags: list[str] = field(default_factory=list)  # signs of copied code (see `copy_flags`); never change a grade

    def as_dict(self) -> dict:
        return {"exercise": self.exercise, "passed": self.passed, "message": self.message,
                "seconds": round(self.seconds, 3)}


@dataclass
class Layout:
    folder: Path | None  # where the exercise modules were found
    problems: dict[str, str] = field(default_factory=dict)  # module -> why it cannot be graded
    found: list[str] = field(default_factory=list)


def locate(submission: Path, module_names: list[str]) -> Layout:
    """Find the exercise modules of a submission: in the folder itself, in its `course/` (or `solutions/`), or
    one level down (`alice/myrepo/course/`). The candidate holding most modules wins, the shallowest on a tie."""
    try:
        if not stat.S_ISDIR(os.stat(submission).st_mode):
            return Layout(None, {m: "the submission is not a folder" for m in module_names})
    except OSError:
        return Layout(None, {m: "the submission folder does not exist" for m in module_names})

    def is_dir(p: Path) -> bool:
        try:
            return stat.S_ISDIR(os.lstat(p).st_mode)
        except OSError:
            return False

    candidates = [submission, submission / "course", submission / "solutions"]
    try:
        subs = sorted(e for e in os.listdir(submission) if not e.startswith((".", "__")))[:200]
    except OSError:
        subs = []
    for name in subs:
        d = submission / name
        if is_dir(d) and name not in ("course", "solutions"):
            candidates += [d, d / "course", d / "solutions"]

    def score(d: Path) -> int:
        n = 0
        for m in module_names:
            try:
                os.lstat(d / f"{m}.py")
                n += 1
            except OSError:
                pass
        return n

    best = max((c for c in candidates if c == submission or is_dir(c)), key=score)
    layout = Layout(best)
    for m in module_names:
        path = best / f"{m}.py"
        try:
            info = os.lstat(path)
        except OSError:
            layout.problems[m] = (f"no {m}.py was found in the submission (looked in the folder, its course/, and "
                                  "one level down).")
            continue
        if not stat.S_ISREG(info.st_mode):
            layout.problems[m] = f"{m}.py is not a regular file (a link, a pipe?), so it cannot be graded."
        elif info.st_size > MODULE_CAP:
            layout.problems[m] = f"{m}.py is larger than {MODULE_CAP >> 20} MB, so it is not graded."
        else:
            layout.found.append(m)
    return layout


def _read_capped(path: Path, cap: int, tail: bool = False) -> bytes | None:
    """Read a regular file the learner's process may have tampered with: no links, no pipes, at most `cap`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        if info.st_size > cap and not tail:
            return None
        if tail and info.st_size > cap:
            os.lseek(fd, info.st_size - cap, os.SEEK_SET)
        chunks, left = [], cap
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _load(path: Path):
    import io

    import torch

    data = _read_capped(path, RESULT_CAP)
    if data is None:
        return None
    try:
        return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except Exception:  # noqa: BLE001 - an unreadable result is a failed check, never a crashed grader
        return None


_REAL_DTYPES = ("float16", "bfloat16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool")
ELEMENT_CAP = 1 << 26  # elements of one value the grader compares


def acceptable(x) -> str | None:
    """None when `x` is a value the grader can compare safely: a plain, dense (strided) CPU tensor of a real dtype
    (not meta, sparse, nested, quantized or complex, not a subclass) and of a sane size; else what is wrong."""
    import torch

    if type(x) is not torch.Tensor:
        return "no tensor came back to the grader"
    if x.layout != torch.strided or x.is_nested or x.device.type != "cpu":
        return f"a {x.layout} tensor on {x.device} came back, not a dense CPU tensor"
    if str(x.dtype).removeprefix("torch.") not in _REAL_DTYPES:
        return f"a tensor of dtype {x.dtype} came back"
    if x.numel() > ELEMENT_CAP:
        return f"a tensor of {x.numel()} elements came back"
    return None


def finite_seconds(value, default: float = 0.0) -> float:
    """`value` when it is a finite, non-negative float (a child's word on its own time), else `default`."""
    import math

    if type(value) in (float, int) and math.isfinite(value) and value >= 0:
        return float(value)
    return float(default)


def verify(records: list, items) -> str | None:
    """Re-decide a pass in the grader: the learner's recorded values against the reference's. None when they
    agree, else what differs. Never raises: whatever a child sends, a value that cannot be compared is a reason."""
    try:
        return _verify(records, items)
    except Exception as e:  # noqa: BLE001 - a value that breaks the comparison is not a confirmed pass
        return f"a value that came back could not be compared ({clean_text(type(e).__name__, 80)})."


def _verify(records: list, items) -> str | None:
    import torch

    from course.grader.grading import RULES

    if not records:
        return "the check compared nothing the grader could confirm."
    if type(items) is not list or len(items) != len(records):
        n = len(items) if type(items) is list else 0
        return (f"the check compared {n} value(s) where the reference's run compared {len(records)}, so the pass "
                "could not be confirmed.")
    for rec, got in zip(records, items):
        what = clean_text(rec.get("what", "a value"), 200)
        bad = acceptable(got)
        if bad:
            return f"{what}: {bad}."
        want = rec.get("want")
        shape = rec.get("shape") if rec["kind"] != "close" else list(want.shape) if type(want) is torch.Tensor else None
        if shape is not None and list(got.shape) != list(shape):
            return f"{what} should have shape {tuple(shape)}, got {tuple(got.shape)}."
        finite = rec.get("finite", True) if rec["kind"] == "tensor" else True
        if finite and got.is_floating_point() and not bool(torch.isfinite(got).all()):
            return f"{what} has NaN or infinite values."
        if rec["kind"] == "tensor":
            if rec["dtype"] is not None and str(got.dtype) != rec["dtype"]:
                return f"{what} should have dtype {rec['dtype']}, got {got.dtype}."
            if rec["device"] is not None and got.device.type != rec["device"]:
                return f"{what} should be on {rec['device']}, got {got.device}."
            continue
        if rec["kind"] == "rule":
            if str(got.dtype) != rec["dtype"]:
                return f"{what} should have dtype {rec['dtype']}, got {got.dtype}."
            problem = RULES[rec["rule"]](got, **rec["params"])
            if problem:
                return f"{what} {problem}"
            continue
        if type(want) is not torch.Tensor:
            return f"{what}: the reference's value is missing."
        if rec["check_dtype"] and got.dtype != want.dtype:
            return f"{what} should have dtype {want.dtype}, got {got.dtype}."
        diff = (got.double() - want.double()).abs()
        bound = rec["atol"] + rec["rtol"] * want.double().abs()
        if not bool((diff <= bound).all()):
            worst = float((diff - bound).max())
            return (f"{what} differs from the reference by up to {float(diff.max()):.3g} (beyond the tolerance "
                    f"atol={rec['atol']:g}, rtol={rec['rtol']:g} by {worst:.3g}).")
    return None


class Grader:
    """Grades submissions against the requested checks; thread-safe (`jobs` workers, one zygote each)."""

    def __init__(self, names: list[str], *, timeout: float = 60.0, memory_mb: int = 4096, jobs: int = 1,
                 extra: str | Path | None = None, workdir: str | Path | None = None, verbose: bool = False,
                 submission_timeout: float = 0.0, allow_processes: bool = False, disk_mb: int = DISK_MB):
        from course.grader.exercises import COURSE_DIR, SOLUTIONS_DIR, modules

        self.timeout, self.memory_mb, self.verbose = float(timeout), int(memory_mb), verbose
        self.submission_timeout = float(submission_timeout or 0)
        self.allow_processes = bool(allow_processes)
        self.disk_mb = int(disk_mb)
        self.hard_timeout = self.timeout + 2.0 + 0.1 * self.timeout
        self.modules = modules()
        self.root = Path(tempfile.mkdtemp(prefix="course-grade-", dir=workdir)).resolve()
        self.snapshot = self.root / "ro"
        def ignore(folder, names):  # Python sources only (no caches, no data a future course/ may hold)
            return [n for n in names if n == "__pycache__" or (not n.endswith(".py") and not os.path.isdir(
                os.path.join(folder, n)))]

        shutil.copytree(COURSE_DIR, self.snapshot / "course", ignore=ignore)
        shutil.copytree(SOLUTIONS_DIR, self.snapshot / "solutions", ignore=ignore)
        extra_dir = ""
        if extra:
            extra_dir = str(self.snapshot / "extra")
            shutil.copytree(extra, extra_dir, ignore=ignore)
        self._write_given(names)
        import compileall

        compileall.compile_dir(self.snapshot, quiet=1)  # the children load modules from it again and again
        self._freeze(self.snapshot)
        self.problems: list[str] = []
        self._lock = threading.Lock()
        self._idle: list[Worker] = []
        self._all: list[Worker] = []
        self._extra_dir = extra_dir
        self.closed = False
        self.jobs = max(1, jobs)
        self.records: dict[str, list] = {}
        self.broken: dict[str, str] = {}
        self.isolated: set[str] = set()  # checks run in the checker, the learner's child serving only its code
        try:
            starters = [threading.Thread(target=self._start_one) for _ in range(self.jobs)]
            for t in starters:
                t.start()
            for t in starters:
                t.join()
            if not self._idle:
                raise GraderProblem("; ".join(self.problems) or "no worker started")
            self.landlock = self._idle[0].landlock
            self.names = list(dict.fromkeys(list(names) + self._idle[0].extras))
            self._trusted_runs()
        except BaseException:
            self.close(force=True)
            raise

    def _write_given(self, names) -> None:
        """`given/` in the snapshot, what a runner and a learner's child read instead of `solutions/`: the exercise
        names (exercises.json), the generated stubs (stubs/<module>.py) and, per exercise, the module's reference
        without that exercise's body (<exercise>/<module>.py), which supplies the module's other exercises."""
        from course.grader.exercises import exercises, given_source, student_source

        given = self.snapshot / "given"
        (given / "stubs").mkdir(parents=True)
        table = {m: exercises(m) for m in self.modules}
        (given / "exercises.json").write_text(json.dumps(table))
        for module, names_of in table.items():
            (given / "stubs" / f"{module}.py").write_text(student_source(module))
            for name in names_of:
                (given / name).mkdir()
                (given / name / f"{module}.py").write_text(given_source(name))

    @staticmethod
    def _freeze(top: Path) -> None:
        for dirpath, _, filenames in os.walk(top, topdown=False):
            for f in filenames:
                os.chmod(os.path.join(dirpath, f), 0o444)
            os.chmod(dirpath, 0o555)

    def _start_one(self) -> None:
        try:
            z = Worker(self.root, self.snapshot, self._extra_dir)
        except GraderProblem as e:
            with self._lock:
                self.problems.append(str(e))
            return
        with self._lock:
            self._idle.append(z)
            self._all.append(z)

    def _spawn(self) -> Worker:
        if self.closed:
            raise GraderProblem("grading was stopped")
        z = Worker(self.root, self.snapshot, self._extra_dir)
        with self._lock:
            self._all.append(z)
        return z

    def _take(self) -> Worker:
        """An idle worker, or a new one where fewer than `jobs` are alive (one failed and was dropped)."""
        while True:
            if self.closed:
                raise GraderProblem("grading was stopped")
            with self._lock:
                if self._idle:
                    return self._idle.pop()
                short = len(self._all) < self.jobs
            if short:
                return self._spawn()
            time.sleep(0.01)

    def _give(self, z: Worker) -> None:
        with self._lock:
            self._idle.append(z)

    def _box(self) -> Path:
        box = self.root / f"box-{uuid.uuid4().hex}"
        (box / "work").mkdir(parents=True)
        (box / "tmp").mkdir()
        return box

    def _run(self, z: Worker, req: dict) -> tuple[Worker, dict]:
        """Run one request; a worker that fails is replaced and the request tried once more. Raises GraderProblem
        (the failed worker dropped) when the second try fails too."""
        for attempt in range(2):
            try:
                return z, z.run(req)
            except GraderProblem as e:
                z.close(force=True)
                with self._lock:
                    if z in self._all:
                        self._all.remove(z)
                if attempt or self.closed:
                    raise
                if self.verbose:
                    print(f"(restarting a worker: {e})", file=sys.stderr)
                z = self._spawn()
        raise AssertionError("unreachable")

    def _trusted_runs(self) -> None:
        """Each check first runs on the reference across the pipes (a dry run: the checker runs it, the child serves
        the reference's module). Where it passes, comparing something, the check is graded that way (`isolated`);
        otherwise it runs once on the reference in the learner's process, which records what it compares, and is
        graded the legacy way (see `verify`); where that fails too, the check is broken."""
        from concurrent.futures import ThreadPoolExecutor

        def one(name: str) -> None:
            z = self._take()
            try:
                z = self._dry_run(z, name)
                if name not in self.isolated and name not in self.broken:
                    z = self._legacy_trusted_run(z, name)
            except GraderProblem as e:
                self.broken[name] = clean_text(f"the reference's run failed: {e}", 500)
                return
            self._give(z)

        with ThreadPoolExecutor(max(1, len(self._idle))) as pool:
            list(pool.map(one, self.names))
        for name, why in self.broken.items():
            self.problems.append(f"{name}: {why}")

    def _dry_run(self, z: Worker, name: str) -> Worker:
        box = self._box()
        try:
            z, status = self._run(z, {"mode": "serve-trusted", "exercise": name, "box": str(box),
                                      "timeout": self.timeout, "hard_timeout": self.hard_timeout * 3, "memory_mb": 0})
        finally:
            _remove(box)
        result = status.get("result") or {}
        if result.get("passed") is True and result.get("compared"):
            self.isolated.add(name)
        elif result.get("passed") is True:
            self.broken[name] = (_RECORDS_NOTHING + " (write it with expect_close, expect_tensor or confirm), so no "
                                 "pass could be believed.")
        elif self.verbose:
            print(f"(the check of {name} runs in the learner's process: across the pipes the reference "
                  f"{clean_text(result.get('message') or 'ended', 300)})", file=sys.stderr)
        return z

    def _legacy_trusted_run(self, z: Worker, name: str) -> Worker:
        box = self._box()
        try:
            z, status = self._run(z, {"mode": "trusted", "exercise": name, "box": str(box), "timeout": self.timeout,
                                      "hard_timeout": self.hard_timeout * 3, "memory_mb": 0})
            payload = _load(box / "result.pt")
            if not isinstance(payload, dict) or payload.get("mode") != "trusted":
                output = (_read_capped(box / "output.txt", OUTPUT_TAIL, tail=True) or b"").decode(errors="replace")
                self.broken[name] = clean_text(f"the reference's run gave no result ({status}): {output}", 500)
            elif not payload.get("passed"):
                self.broken[name] = clean_text(f"the reference fails this check: {payload.get('message')}", 500)
            elif not payload.get("items"):
                self.broken[name] = (_RECORDS_NOTHING + " (write it with expect_close, expect_tensor or "
                                     "confirm), so no pass could be believed.")
            else:
                self.records[name] = list(payload.get("items", []))
        finally:
            _remove(box)
        return z

    def in_learners_process(self) -> list[str]:
        """The checks that could not run across the pipes and run, the legacy way, in the learner's process (their
        passes re-decided from recorded values; see the README for what that leaves open)."""
        return [n for n in self.names if n not in self.isolated and n not in self.broken]

    def unverified(self) -> list[str]:
        """Checks that record no comparison on the reference: no pass of theirs could be confirmed, so they are
        reported as broken and their rows are "not graded" (see the README)."""
        return [n for n in self.names if n in self.broken and self.broken[n].startswith(_RECORDS_NOTHING)]

    def grade(self, submission: str | Path, label: str | None = None, on_row=None) -> list[Row]:
        """Every requested exercise of one submission, one Row each, in order; never raises GraderProblem for a
        submission's behaviour (a worker that fails twice gives 'not graded' rows and a recorded problem)."""
        label = label if label is not None else str(submission)
        layout = locate(Path(submission), self.modules)
        rows = []
        z: Worker | None = self._take()
        start = time.monotonic()
        hung: dict[str, str] = {}  # module -> the message of its import that was stopped
        flags: dict[str, dict[str, list[str]]] = {}  # module -> exercise -> signs of copying
        try:
            for name in self.names:
                if self.closed:
                    raise GraderProblem("grading was stopped")
                module = name.split("/", 1)[0].split(".", 1)[0]
                if name in self.broken:
                    row = Row(label, name, False, "not graded: the grader's check is broken here (see the grader's "
                                                  "output).")
                elif module in layout.problems:
                    row = Row(label, name, False, layout.problems[module])
                elif module in hung:
                    row = Row(label, name, False, hung[module])
                elif self.submission_timeout and time.monotonic() - start > self.submission_timeout:
                    row = Row(label, name, False, f"not graded: the submission used up its "
                                                  f"{self.submission_timeout:g} s in all.")
                else:
                    if z is None:
                        try:
                            z = self._spawn()
                        except GraderProblem as e:
                            with self._lock:
                                self.problems.append(f"{label} {name}: {e}")
                            rows.append(Row(label, name, False, clean_text(f"not graded: the grader failed ({e}).")))
                            continue
                    try:
                        z, row = self._grade_one(z, layout.folder / f"{module}.py", module, name, label)
                    except GraderProblem:
                        raise
                    except Exception as e:  # noqa: BLE001 - the grader's own failure on one row, never a lost run
                        with self._lock:
                            self.problems.append(f"{label} {name}: {type(e).__name__}: {e}")
                        row = Row(label, name, False, clean_text(f"not graded: the grader failed ({type(e).__name__}: "
                                                                 f"{e}).", 500))
                    if row.message.startswith(f"importing {module}.py"):
                        hung[module] = row.message + " (not run again for this module's other exercises)"
                if module not in layout.problems:
                    if module not in flags:
                        names = [n for n in self.names if n.split("/", 1)[0].split(".", 1)[0] == module]
                        data = _read_capped(layout.folder / f"{module}.py", MODULE_CAP)
                        flags[module] = copy_flags(data, module, names) if data is not None else {}
                    row.flags = list(flags[module].get(name, []))
                rows.append(row)
                if on_row:
                    on_row(row)
        finally:
            if z is not None:
                self._give(z)
        return rows

    def _grade_one(self, z: Worker, source: Path, module: str, name: str, label: str) -> tuple[Worker, Row]:
        data = _read_capped(source, MODULE_CAP)
        if data is None:
            return z, Row(label, name, False, f"{module}.py could not be read as a regular file.")
        box = self._box()
        try:
            (box / "work" / f"{module}.py").write_bytes(data)
            req = {"mode": "serve" if name in self.isolated else "learner", "exercise": name, "box": str(box),
                   "timeout": self.timeout, "hard_timeout": self.hard_timeout, "memory_mb": self.memory_mb,
                   "processes": self.allow_processes, "disk_mb": self.disk_mb}
            try:
                z, status = self._run(z, req)
            except GraderProblem as e:
                with self._lock:
                    self.problems.append(f"{label} {name}: {e}")
                return None, Row(label, name, False, clean_text(f"not graded: the grader failed ({e}).", 500))
            if status.get("killed") and not (box / "loaded").exists():
                return z, Row(label, name, False, f"importing {module}.py took longer than {self.timeout:g} s and "
                                                  "was stopped. Hint: an exercise module should only define things; "
                                                  "move work done at import into functions.",
                              finite_seconds(status.get("wall")))
            result = status.get("result")
            if isinstance(result, dict) and result.get("grader_error"):
                why = clean_text(f"the grader's checker failed ({result['grader_error']})", 400)
                with self._lock:
                    self.problems.append(f"{label} {name}: {why}")
                return z, Row(label, name, False, f"not graded: {why}.")
            if name in self.isolated:  # the checker's answer, unless the child ended before the check did
                payload = result if isinstance(result, dict) and not result.get("ended") else None
            else:
                payload = _load(box / "result.pt")
            output = clean_text((_read_capped(box / "output.txt", OUTPUT_TAIL, tail=True) or b"")
                                .decode("utf-8", "replace"), OUTPUT_TAIL)
            ours = self._our_failure(status, payload)
            if ours:
                with self._lock:
                    self.problems.append(f"{label} {name}: {ours}")
                return z, Row(label, name, False, clean_text(f"not graded: {ours}", 500), output=output)
            return z, self._decide(label, name, status, payload, output)
        finally:
            _remove(box)

    def _our_failure(self, status: dict, payload) -> str:
        """Why a child ended without a result through no fault of the code under test ('' when it is its own)."""
        if isinstance(payload, dict) or status.get("killed") or status.get("disk"):
            return ""
        if status.get("low_disk"):
            return ("the work folder's file system was (nearly) full while this ran, so the missing result is the "
                    "grader's problem; free some space (or use --workdir) and grade this submission again.")
        if status.get("code") == _GRADER_FAILED:
            return "the grader's own code failed in the sandboxed process (see the row's output)."
        return ""

    def _decide(self, label: str, name: str, status: dict, payload, output: str) -> Row:
        wall = finite_seconds(status.get("wall"), 0.0)
        if status.get("disk"):
            return Row(label, name, False, f"your code {status['disk']} in its working folder (the limit is "
                                           f"{self.disk_mb} MB and {BOX_ENTRIES} entries) and was stopped. Hint: an "
                                           "exercise should not write files.", wall, output=output)
        if status.get("killed"):
            return Row(label, name, False, f"took longer than {self.timeout:g} s and was stopped from outside (it kept "
                                           "running past the time limit: a loop that never ends, perhaps one that "
                                           "catches every exception or turns the alarm off).", wall, output=output)
        isolated = name in self.isolated
        if not isinstance(payload, dict) or (payload.get("mode") != "learner" and not isolated):
            if status.get("signal"):
                sig = status["signal"]
                try:
                    signame = signal.Signals(sig).name
                except ValueError:
                    signame = str(sig)
                return Row(label, name, False, f"the process running your code was killed by {signame} (a crash "
                                               f"in native code, or more than the {self.memory_mb} MB of memory "
                                               "allowed?).", wall, output=output)
            return Row(label, name, False, f"the process running your code ended (exit status {status.get('code')}) "
                                           "before the check finished. Hint: never call exit(), sys.exit() or "
                                           "os._exit() in an exercise module.", wall, output=output)
        message = clean_text(payload.get("message") if isinstance(payload.get("message"), str) else "", MESSAGE_CAP)
        seconds = finite_seconds(payload.get("seconds"), wall)
        if payload.get("passed") is not True:
            return Row(label, name, False, message or "failed.", seconds, output=output)
        if isolated:  # decided in the checker, which compared the learner's values itself
            if not payload.get("compared"):
                return Row(label, name, False, "the check passed without comparing any value, so the pass could "
                                               "not be confirmed.", seconds, output=output)
            return Row(label, name, True, message or "passed.", seconds, verified=True, output=output)
        problem = verify(self.records.get(name, []), payload.get("items"))
        if problem:
            return Row(label, name, False, clean_text(
                f"the check passed inside your process, but the grader's own comparison disagrees: {problem} "
                "Hint: if your code changes one of its inputs in place (`x += ...`, `x.mul_(...)`), the check "
                "compared after the change; work on new tensors.", MESSAGE_CAP), seconds, output=output)
        return Row(label, name, True, message or "passed.", seconds, verified=True, output=output)

    def close(self, force: bool = False) -> None:
        self.closed = True
        with self._lock:
            zygotes, self._all, self._idle = list(self._all), [], []
        for z in zygotes:
            z.close(force=force)
        _remove(self.root)


def _remove(top: Path) -> None:
    """Remove a folder whatever modes its files were left with."""
    for dirpath, dirnames, _ in os.walk(top):
        for d in dirnames:
            full = os.path.join(dirpath, d)
            if not os.path.islink(full):
                try:
                    os.chmod(full, 0o700)
                except OSError:
                    pass
    try:
        os.chmod(top, 0o700)
    except OSError:
        pass
    shutil.rmtree(top, ignore_errors=True)
