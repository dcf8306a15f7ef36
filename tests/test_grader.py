"""The grader survives whatever a submission does, and its command line keeps the SYLLABUS contract.

The in-notebook `check(...)` runs in-process (fast); `python -m course grade` and `check --impl DIR --json` run each
exercise in a sandboxed child (course/grader/sandbox.py). `test_a_hostile_class_is_graded_correctly` grades a generated
class of submissions (correct, partly correct, raising, hanging, exiting, forging, patching, writing where they should
not, leaving processes behind, odd messages) and checks every row; `test_the_probes_class_is_graded_in_one_run` grades
the class of issue 25's probe (the reference imported, exec'd or found in memory, checks silenced in the child, forged
results and times, IPC leftovers) beside correct submissions in one run.
"""
import csv
import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from course.grader.exercises import ROOT, SOLUTIONS_DIR, student_source
from course.grader.grading import check, run_exercise
from course.grader.sandbox import clean_text, landlock_abi, locate

SOURCE = (SOLUTIONS_DIR / "diffusion.py").read_text()
Q_SAMPLE_BODY = "    return a.sqrt() * x0 + (1 - a).sqrt() * noise\n"
FUTURE = "from __future__ import annotations\n"
DIFFUSION = ["diffusion.linear_betas", "diffusion.cosine_betas", "diffusion.q_sample", "diffusion.ddpm_loss",
             "diffusion.ddpm_step", "diffusion.ddim_step", "diffusion.cfg_eps"]


def submission(tmp_path: Path, new_body: str | None = None, text: str | None = None) -> Path:
    folder = tmp_path / "submission"
    folder.mkdir(exist_ok=True)
    source = text if text is not None else SOURCE.replace(Q_SAMPLE_BODY, new_body or Q_SAMPLE_BODY)
    (folder / "diffusion.py").write_text(source)
    return folder


def cli(*args, env=None, timeout=300, cwd=ROOT):
    env = {**os.environ, **(env or {})}
    env.pop("COURSE_SOLUTIONS", None)
    return subprocess.run([sys.executable, "-m", "course", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=timeout)


# ---------------------------------------------------------------------------------------------------------------
# In-process checks (the notebook's `check`)
# ---------------------------------------------------------------------------------------------------------------
def test_a_submission_that_raises_fails_with_its_exception(tmp_path):
    r = run_exercise("diffusion.q_sample", submission(tmp_path, "    raise ValueError('oops')\n"))
    assert not r.passed and "ValueError: oops" in r.message and "diffusion.py line" in r.message


def test_a_submission_that_hangs_is_stopped(tmp_path):
    r = run_exercise("diffusion.q_sample", submission(tmp_path, "    while True:\n        pass\n"), timeout=1)
    assert not r.passed and "longer than 1 s" in r.message and r.seconds < 10


def test_a_hang_that_swallows_exceptions_is_still_stopped(tmp_path):
    body = "    while True:\n        try:\n            pass\n        except Exception:\n            pass\n"
    r = run_exercise("diffusion.q_sample", submission(tmp_path, body), timeout=1)
    assert not r.passed and "longer than" in r.message


def test_a_submission_that_returns_nan_fails(tmp_path):
    r = run_exercise("diffusion.q_sample", submission(tmp_path, "    return x0 * float('nan')\n"))
    assert not r.passed and "NaN" in r.message


def test_wrong_shape_and_dtype_are_named(tmp_path):
    r = run_exercise("diffusion.q_sample", submission(tmp_path, "    return (a.sqrt() * x0)[0]\n"))
    assert not r.passed and "shape" in r.message
    r = run_exercise("diffusion.q_sample",
                     submission(tmp_path, "    return (a.sqrt() * x0 + (1 - a).sqrt() * noise).half()\n"))
    assert not r.passed and "dtype" in r.message


def test_a_syntax_error_fails_every_exercise_of_the_module(tmp_path):
    folder = submission(tmp_path, text=SOURCE.replace("def q_sample(", "def q_sample(:"))
    report = check("diffusion", impl=folder)
    assert not report.passed and len(report.results) == 7
    assert all("SyntaxError" in r.message for r in report.results)


def test_a_missing_module_and_a_missing_name(tmp_path):
    r = run_exercise("diffusion.q_sample", tmp_path)
    assert not r.passed and "no diffusion.py" in r.message
    r = run_exercise("diffusion.q_sample", submission(tmp_path, text=SOURCE.replace("def q_sample(", "def qsample(")))
    assert not r.passed and "missing" in r.message and "_course_impl" not in r.message


def test_a_renamed_function_fails_only_its_own_exercise(tmp_path):
    folder = submission(tmp_path, text=SOURCE.replace("def q_sample(", "def qsample("))
    assert run_exercise("diffusion.cosine_betas", folder).passed


def test_a_string_that_looks_like_a_stub_message_is_not_a_stub(tmp_path):
    body = "    note = 'Exercise `diffusion.q_sample` is done'\n" + Q_SAMPLE_BODY
    assert run_exercise("diffusion.q_sample", submission(tmp_path, body)).passed


def test_sys_exit_at_import_is_a_failure_not_an_exit(tmp_path):
    folder = submission(tmp_path, text=SOURCE.replace(FUTURE, FUTURE + "import sys\nsys.exit(0)\n"))
    r = run_exercise("diffusion.q_sample", folder)
    assert not r.passed and "sys.exit" in r.message


def test_the_other_exercises_do_not_matter(tmp_path):
    """Each block is graded alone: a broken q_sample does not fail ddpm_loss, which uses it."""
    folder = submission(tmp_path, "    raise ValueError('broken')\n")
    assert run_exercise("diffusion.ddpm_loss", folder).passed


def test_submissions_are_found_one_level_down(tmp_path):
    deep = tmp_path / "alice" / "my-repo" / "course"
    deep.mkdir(parents=True)
    (deep / "diffusion.py").write_text(SOURCE)
    (tmp_path / "alice" / "notes").mkdir()
    layout = locate(tmp_path / "alice", ["diffusion", "layers"])
    assert layout.folder == deep and layout.found == ["diffusion"] and "layers" in layout.problems


def test_clean_text_makes_one_safe_line():
    text = clean_text("=cmd\x00\x1b[31m\r\nnext\u202e" + "é" * 3000 + "\udcff", 100)
    assert text.startswith("'=cmd") and len(text) <= 101
    assert all(c.isprintable() for c in text)


def test_strict_mode_raises_for_nbval(monkeypatch):
    monkeypatch.setenv("COURSE_STRICT", "1")
    with pytest.raises(AssertionError, match="not done yet"):
        check("diffusion.q_sample", impl=ROOT / "course")


def test_reference_mode_switches_imports():
    code = "import course.diffusion as d; print(d.__file__)"
    env = {k: v for k, v in os.environ.items() if k != "COURSE_SOLUTIONS"}
    learner = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env)
    reference = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                               env={**env, "COURSE_SOLUTIONS": "1"})
    assert learner.stdout.strip().endswith(os.path.join("course", "diffusion.py"))
    assert reference.stdout.strip().endswith(os.path.join("solutions", "diffusion.py"))


def test_setup_borrows_the_reference_for_unfinished_earlier_chapters_and_says_so():
    code = ("from course import setup; setup('layers'); import course.diffusion as d, torch; "
            "print(d.linear_betas(3).tolist())")
    env = {k: v for k, v in os.environ.items() if k != "COURSE_SOLUTIONS"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "reference stands in for: diffusion.linear_betas" in proc.stdout
    assert "[0.0001, 0.01005, 0.02]" in proc.stdout


# ---------------------------------------------------------------------------------------------------------------
# The command line (sandboxed)
# ---------------------------------------------------------------------------------------------------------------
def test_cli_check_exit_codes_and_json(tmp_path):
    ok = cli("check", "diffusion", "--impl", "solutions", "--json", "--workdir", str(tmp_path))
    assert ok.returncode == 0, ok.stderr
    rows = [json.loads(line) for line in ok.stdout.splitlines()]
    assert [r["exercise"] for r in rows] == DIFFUSION
    assert all(set(r) == {"exercise", "passed", "message", "seconds"} and r["passed"] for r in rows)
    stub = cli("check", "diffusion.q_sample", "--impl", "course")
    assert stub.returncode == 1 and "not done yet" in stub.stdout
    assert cli("check", "diffusion.q_sampel").returncode == 2
    listed = cli("list")
    assert listed.returncode == 0 and "diffusion.cfg_eps" in listed.stdout
    exits = submission(tmp_path, text=SOURCE.replace(FUTURE, FUTURE + "import sys\nsys.exit(0)\n"))
    proc = cli("check", "diffusion.q_sample", "--impl", str(exits), "--json", "--workdir", str(tmp_path))
    assert proc.returncode == 1 and "sys.exit" in proc.stdout
    assert list(tmp_path.iterdir()) == [exits]  # the sandbox's folders are gone
    forks = submission(tmp_path, "    import os\n    os.fork()\n" + Q_SAMPLE_BODY)
    proc = cli("check", "diffusion.q_sample", "--impl", str(forks), "--json", "--workdir", str(tmp_path))
    assert proc.returncode == 1 and "PermissionError" in proc.stdout


# ---------------------------------------------------------------------------------------------------------------
# A generated class of submissions, hostile ones included
# ---------------------------------------------------------------------------------------------------------------
MARKER = "course-grader-test-leftover"
WRONG = "    return a.sqrt() * noise + (1 - a).sqrt() * x0\n"  # a declared mistake: x0 and ε swapped
DETACH = """
import os, subprocess, sys
try:
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)  # {marker}"], start_new_session=True,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(2); "
                     "open({grades!r}, 'w').write('x'); time.sleep(600)  # {marker}"])
        os._exit(0)
except PermissionError:
    pass  # the sandbox does not let the code under test start processes (unless --allow-processes)
"""


def _q(body: str) -> str:
    """The reference with q_sample's body replaced (indented by 4)."""
    return SOURCE.replace(Q_SAMPLE_BODY, textwrap.indent(textwrap.dedent(body), "    "))


def _prefix(code: str, body: str | None = None) -> str:
    """The reference (or q_sample replaced) with `code` run at import, right after `from __future__ import ...`."""
    text = _q(body) if body else SOURCE
    head, future, tail = text.partition(FUTURE)
    return head + future + textwrap.dedent(code) + "\n" + tail


def _written_differently() -> str:
    """diffusion.py, correct, with q_sample and cfg_eps in other words than the reference's."""
    return _q("""
        ab = alphas_cumprod.to(x0.dtype)[t]
        ab = ab.reshape(len(t), *([1] * (x0.dim() - 1)))
        return torch.sqrt(ab) * x0 + torch.sqrt(1.0 - ab) * noise
        """).replace("return eps_uncond + w * (eps_cond - eps_uncond)", "return (1 - w) * eps_uncond + w * eps_cond")


# Code run at import that makes every result file the child saves a forged pass with forged tensors `items` and a
# NaN time. (The checker decides and times every check: a forged result file is never read.)
FORGE_ITEMS = """
    import torch
    _save = torch.save
    def save(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and "items" in obj:
            obj = dict(obj, passed=True, seconds=float("nan"), items={items})
        return _save(obj, f, *args, **kwargs)
    torch.save = save
    """


def _class(tmp: Path) -> tuple[dict, dict]:
    """{name: files} and {name: {exercise: (passed, fragment)}} (exercises not named pass)."""
    subs, expect = {}, {}
    out = tmp / "outside"
    sentinel = out / "sentinel.txt"
    grades = tmp / "grades.csv"

    def add(name, text=None, expected=None, files=None):
        subs[name] = files if files is not None else {"diffusion.py": text}
        expect[name] = expected or {}

    everything = dict.fromkeys(DIFFUSION)
    add("correct", SOURCE)
    add("correct_in_course", files={"course/diffusion.py": SOURCE})
    add("correct_one_level_down", files={"repo/course/diffusion.py": SOURCE, "repo/README.md": "hi"})
    add("correct_written_differently", _written_differently())
    add("stub", student_source("diffusion"), {e: (False, "not done yet") for e in everything})
    add("wrong_q_sample", _q(WRONG), {"diffusion.q_sample": (False, "swapped")})
    add("raises", _q("raise ValueError('oops')"), {"diffusion.q_sample": (False, "ValueError: oops")})
    add("syntax_error", SOURCE.replace("def q_sample(", "def q_sample(:"),
        {e: (False, "SyntaxError") for e in everything})
    add("renamed", SOURCE.replace("def q_sample(", "def qsample("), {"diffusion.q_sample": (False, "missing")})
    add("stub_like_string", _q("note = 'Exercise `diffusion.q_sample` done'\n" + Q_SAMPLE_BODY.strip()))
    add("hang_swallowing_alarms", _q("""
        import signal
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_IGN)
        while True:
            try:
                pass
            except BaseException:
                pass
        """), {"diffusion.q_sample": (False, "stopped from outside")})
    add("hangs_at_import", _prefix("while True:\n    pass"),
        {e: (False, "importing diffusion.py took longer than 3 s") for e in everything})
    add("input_at_import", _prefix("input()"), {e: (False, "EOFError") for e in everything})
    add("exit_at_import", _prefix("import sys; sys.exit(0)"), {e: (False, "sys.exit") for e in everything})
    add("os_exit_in_q_sample", _q("import os; os._exit(0)"), {"diffusion.q_sample": (False, "exit status 0")})
    add("segfault", _q("import ctypes; ctypes.string_at(0)"), {"diffusion.q_sample": (False, "SIGSEGV")})
    add("keyboard_interrupt", _q("raise KeyboardInterrupt"), {"diffusion.q_sample": (False, "KeyboardInterrupt")})
    add("memory_hog", _q("return bytearray(8 << 30)"), {"diffusion.q_sample": (False, "MemoryError")})
    add("non_daemon_thread", _prefix("""
        import threading, time
        threading.Thread(target=lambda: time.sleep(3600)).start()
        """))
    forge = json.dumps({"exercise": "diffusion.q_sample", "passed": True, "message": "ok", "seconds": 0})
    add("forge_stdout", _prefix(f"""
        import atexit, sys
        sys.stdout.buffer.write(b"\\xff\\xfe{{not json\\n")
        print('{forge}', end="")
        atexit.register(lambda: print('{forge}'))
        atexit.register(lambda: print('{{"submission": "correct", "exercise": "diffusion.cfg_eps", "passed": false}}'))
        """, WRONG), {"diffusion.q_sample": (False, "swapped")})
    add("forge_result_file", _prefix("""
        import os, torch
        torch.save({"passed": True, "message": "forged", "seconds": 0.0, "items": [], "mode": "learner"},
                   "../result.pt")
        os._exit(0)
        """), {e: (False, "exit status 0") for e in everything})
    add("patch_torch_and_grading", _prefix("""
        import torch
        torch.allclose = lambda *a, **k: True
        torch.equal = lambda *a, **k: True
        import course.grader.grading as g
        for name in list(g._REGISTRY):
            g._REGISTRY[name] = lambda impl, ref: "all good"
        """, WRONG), {"diffusion.q_sample": (False, "swapped")})
    add("imports_the_checks", _prefix("import course.grader.checks.diffusion"),
        {e: (False, "could not be imported") for e in everything})
    add("tensor_subclass", _q("""
        import torch
        class Liar(torch.Tensor):
            @classmethod
            def __torch_function__(cls, func, types, args=(), kwargs=None):
                if getattr(func, "__name__", "") in ("allclose", "equal", "all", "le", "__le__", "isfinite"):
                    return torch.tensor(True)
                return super().__torch_function__(func, types, args, kwargs or {})
        return torch.zeros_like(x0).as_subclass(Liar)
        """), {"diffusion.q_sample": (False, "torch.Tensor")})
    targets = [ROOT / "solutions" / "diffusion.py", ROOT / "course.py", tmp / "course.py", sentinel,
               tmp / "subs" / "correct" / "diffusion.py", grades]
    add("writes_everywhere", _prefix(f"""
        import os
        for path in {[str(t) for t in targets]!r} + ["course.py", "../../x.py"]:
            try:
                with open(path, "a") as f:
                    f.write("# hijacked\\n")
            except OSError:
                pass
        for path in {[str(ROOT / "solutions"), str(tmp / "subs")]!r}:
            for change in (lambda: os.chmod(path, 0o777), lambda: os.utime(path, (0, 0))):
                try:
                    change()
                except OSError:
                    pass
        """))
    add("detached_children", _prefix(DETACH.format(marker=MARKER, grades=str(grades))))
    add("kills_the_grader", _prefix("""
        import os, signal
        for pid in (os.getppid(), 1):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        """))
    add("mutates_input", _q("x0.zero_()\nreturn a.sqrt() * x0 + (1 - a).sqrt() * noise"),
        {"diffusion.q_sample": (False, "in place")})
    add("huge_message", _q("raise ValueError('x' * 150_000)"), {"diffusion.q_sample": (False, "ValueError")})
    add("odd_bytes", _q("""
        import sys
        sys.stdout.write("\\x00\\x1b[31m{\\r\\n")
        raise ValueError("\\x00\\x1b[2J\\r\\n=HYPERLINK(\\u202e)\\udcff")
        """), {"diffusion.q_sample": (False, "ValueError")})
    add("fifo", files={"diffusion.py": None}, expected={e: (False, "not a regular file") for e in everything})
    add("link_to_reference", files={"diffusion.py": SOLUTIONS_DIR / "diffusion.py"},
        expected={e: (False, "not a regular file") for e in everything})
    add("empty", files={}, expected={e: (False, "no diffusion.py") for e in everything})
    # Forged results that are not plain tensors (the probe's meta and sparse ones are in `_probes`): refused.
    add("forge_complex_and_huge", _prefix(FORGE_ITEMS.format(
        items="[torch.zeros(1, dtype=torch.complex64) if i % 2 else torch.zeros(1).expand(1 << 40) "
              "for i, _ in enumerate(obj['items'])]"), WRONG), {"diffusion.q_sample": (False, "swapped")})
    # What the learner's code returns that the grader cannot take: refused, the row failed.
    for kind, value in (("meta", "torch.zeros_like(x0, device='meta')"), ("sparse", "x0.to_sparse()"),
                        ("complex", "x0.to(torch.complex64)"), ("huge", "torch.zeros(1).expand(1 << 40)")):
        add(f"returns_{kind}", _q(f"import torch\nreturn {value}"), {"diffusion.q_sample": (False, "cannot")})
    add("fills_its_disk", _q("""
        import itertools
        for i in itertools.count():
            with open(f"fill-{i}.bin", "wb") as f:
                f.write(bytes(8 << 20))
        """), {"diffusion.q_sample": (False, "MB on disk")})
    add("fills_its_disk_with_deleted_files", _q("""
        import itertools, os
        held = []
        for i in itertools.count():
            held.append(open(f"fill-{i}.bin", "wb"))
            os.unlink(f"fill-{i}.bin")
            held[-1].write(bytes(8 << 20))
            held[-1].flush()
        """), {"diffusion.q_sample": (False, "MB on disk")})
    return subs, expect


# {submission: {exercise: the copy flags its row must carry}}; the rows not named carry none
FLAGGED = {"correct": {e: ["same-as-reference"] for e in ("diffusion.q_sample", "diffusion.cosine_betas")},
           "correct_written_differently": {e: [] for e in ("diffusion.q_sample", "diffusion.cfg_eps")}}


def _write(tmp: Path, subs: dict) -> list[str]:
    (tmp / "outside").mkdir()
    (tmp / "outside" / "sentinel.txt").write_text("untouched\n")
    folders = []
    for name, files in subs.items():
        folder = tmp / "subs" / name
        folder.mkdir(parents=True)
        for rel, text in files.items():
            path = folder / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if text is None:
                os.mkfifo(path)
            elif isinstance(text, Path):
                path.symlink_to(text)
            else:
                path.write_text(text)
        folders.append(str(folder))
    return folders


def _fingerprint(paths) -> dict:
    out = {}
    for top in paths:
        for dirpath, _, files in os.walk(top):
            for f in files:
                p = Path(dirpath) / f
                if p.is_fifo() or p.is_symlink() or "__pycache__" in p.parts:
                    continue
                out[str(p)] = (hashlib.sha256(p.read_bytes()).hexdigest(), oct(p.stat().st_mode), p.stat().st_mtime)
        out[str(top)] = (oct(Path(top).stat().st_mode), Path(top).stat().st_mtime)
    return out


def _ipc_objects() -> list[str]:
    """SysV IPC objects (what `ipcs` lists), POSIX message queues (where /dev/mqueue is mounted) and POSIX shared
    memory on this machine (none may be left by grading)."""
    found = []
    for kind in ("shm", "sem", "msg"):
        try:
            found += [f"{kind}: {line}" for line in Path(f"/proc/sysvipc/{kind}").read_text().splitlines()[1:]]
        except OSError:
            pass
    for folder in ("/dev/mqueue", "/dev/shm"):
        found += [f"{folder}/{n}" for n in sorted(os.listdir(folder))] if os.path.isdir(folder) else []
    return found


PROBE_IPC_NAME = "/course-grader-test-ipc"


def _probe_ipc_left() -> list[str]:
    """The POSIX message queue and shared memory object the IPC probe tries to make, if they exist (removed: a
    queue is found by name, since /dev/mqueue is not mounted everywhere)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    found = []
    queue = libc.mq_open(PROBE_IPC_NAME.encode(), os.O_RDONLY)
    if queue >= 0:
        libc.mq_close(queue)
        libc.mq_unlink(PROBE_IPC_NAME.encode())
        found.append(f"message queue {PROBE_IPC_NAME}")
    shm = Path("/dev/shm") / PROBE_IPC_NAME.lstrip("/")
    if shm.exists():
        shm.unlink()
        found.append(str(shm))
    return found


def _no_constants(name):
    raise ValueError(f"{name} in the JSON report")


def _leftovers() -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if MARKER.encode() in cmd and b"import time" in cmd:
                found.append(entry)
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox's fences are Linux's")
def test_a_hostile_class_is_graded_correctly(tmp_path):
    subs, expect = _class(tmp_path)
    assert len(subs) >= 25
    folders = _write(tmp_path, subs)
    watched = [ROOT / "course", ROOT / "solutions", tmp_path / "subs", tmp_path / "outside"]
    before = _fingerprint(watched)
    work = tmp_path / "work"
    work.mkdir()
    out = tmp_path / "grades.csv"
    start = time.monotonic()
    ipc_before = _ipc_objects()
    proc = cli("grade", *folders, "--out", str(out), "--only", "diffusion", "--timeout", "3", "--jobs", "2",
               "--memory-mb", "1024", "--disk-mb", "64", "--workdir", str(work), cwd=tmp_path, timeout=900)
    took = time.monotonic() - start
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    time.sleep(3)  # a detached process that survived would have written by now
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert len(rows) == len(subs) * len(DIFFUSION)
    seen = {(Path(r["submission"]).name, r["exercise"]) for r in rows}
    assert len(seen) == len(rows)
    wrong = []
    for r in rows:
        name = Path(r["submission"]).name
        passed, fragment = expect[name].get(r["exercise"], (True, ""))
        assert len(r["message"]) <= 501 and all(c.isprintable() for c in r["message"]), r
        if (r["passed"] == "True") != passed or fragment not in r["message"]:
            wrong.append(f"{name} {r['exercise']}: {r['passed']} {r['message'][:200]}")
        if name in FLAGGED and r["exercise"] in FLAGGED[name] and r["flags"].split() != FLAGGED[name][r["exercise"]]:
            wrong.append(f"{name} {r['exercise']}: flags {r['flags']!r}, expected {FLAGGED[name][r['exercise']]}")
        if r["seconds"].lower() in ("nan", "inf") or float(r["seconds"]) < 0:
            wrong.append(f"{name} {r['exercise']}: seconds {r['seconds']}")
    assert not wrong, "\n".join(wrong)
    assert _ipc_objects() == ipc_before
    assert _fingerprint(watched) == before
    assert not (ROOT / "course.py").exists() and not (tmp_path / "course.py").exists()
    assert _leftovers() == []
    assert list(work.iterdir()) == []
    report = json.loads(out.with_suffix(".json").read_text(), parse_constant=_no_constants)
    assert report["grading"]["complete"] and not report["grading"]["problems"]
    assert len(report["submissions"]) == len(subs)
    assert report["summary"]["diffusion.q_sample"]["flagged"] == sum(
        bool(r["flags"]) for r in rows if r["exercise"] == "diffusion.q_sample")
    assert report["summary"]["diffusion.q_sample"]["passed"] == sum(
        expect[n].get("diffusion.q_sample", (True,))[0] for n in subs)
    assert all(len(r["message"]) <= 2000 for s in report["submissions"] for r in s["results"])
    print(proc.stdout[-2500:])
    print(f"graded {len(subs)} submissions x 7 exercises in {took:.0f} s (2 jobs); landlock ABI {landlock_abi()}")


def test_cli_grade_extra_checks_and_points(tmp_path):
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir()
    bad.mkdir()
    (good / "diffusion.py").write_text(SOURCE)
    (bad / "diffusion.py").write_text(_q(WRONG))
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "hidden.py").write_text(textwrap.dedent("""
        import torch
        from course.grader.checks.kit import expect_close
        from course.grader.grading import exercise

        @exercise("diffusion/q_sample_at_t0")
        def check_t0(impl, ref):
            ab = torch.cumprod(1 - impl.linear_betas(1000), 0)
            x0, noise = torch.ones(2, 1, 2, 2), torch.zeros(2, 1, 2, 2)
            t = torch.zeros(2, dtype=torch.long)
            expect_close(impl.q_sample(x0, t, noise, ab), ref.q_sample(x0, t, noise, ab))
            return "x_t is x0 at t = 0"

        @exercise("diffusion/reads_the_code_object")
        def check_code(impl, ref):  # a dunder of the learner's function: only where the code runs, so graded there
            assert impl.cfg_eps.__code__.co_argcount == 3
            c, u = torch.ones(2), torch.zeros(2)
            expect_close(impl.cfg_eps(c, u, 2.0), ref.cfg_eps(c, u, 2.0))
        """))
    points = tmp_path / "points.json"
    points.write_text(json.dumps({"diffusion": 2, "diffusion.q_sample": 5}))
    out = tmp_path / "grades.csv"
    proc = cli("grade", str(good), str(bad), "--out", str(out), "--only", "diffusion.q_sample", "diffusion.cfg_eps",
               "--extra", str(extra), "--points", str(points), "--workdir", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = {(Path(r["submission"]).name, r["exercise"]): r for r in csv.DictReader(out.open())}
    assert len(rows) == 8
    assert rows[("good", "diffusion/q_sample_at_t0")]["passed"] == "True"
    assert rows[("bad", "diffusion/q_sample_at_t0")]["passed"] == "False"
    assert rows[("good", "diffusion/reads_the_code_object")]["passed"] == "True"
    assert float(rows[("good", "diffusion.q_sample")]["points"]) == 5
    assert float(rows[("bad", "diffusion.cfg_eps")]["points"]) == 2
    report = json.loads(out.with_suffix(".json").read_text())
    assert [s["score"] for s in report["submissions"]] == [11, 4]
    assert report["grading"]["checks_in_learners_process"] == ["diffusion/reads_the_code_object"]
    assert report["summary"]["diffusion.q_sample"]["pass_rate"] == 0.5
    assert "swapped" in report["summary"]["diffusion.q_sample"]["common_failure"]
    assert "class summary" in proc.stdout


def test_cli_grade_exit_status_says_whether_grading_worked(tmp_path):
    broken = tmp_path / "extra"
    broken.mkdir()
    (broken / "bad.py").write_text("from course.grader.grading import exercise\n"
                                   "@exercise('diffusion/always_fails')\n"
                                   "def check(impl, ref):\n    raise AssertionError('the check is wrong')\n")
    good = submission(tmp_path)
    out = tmp_path / "grades.csv"
    proc = cli("grade", str(good), "--out", str(out), "--only", "diffusion.cfg_eps", "--extra", str(broken),
               "--workdir", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 3 and "always_fails" in proc.stderr
    rows = list(csv.DictReader(out.open()))
    assert [r["passed"] for r in rows] == ["True", "False"] and "not graded" in rows[1]["message"]


def test_ctrl_c_keeps_what_was_graded_and_leaves_nothing_behind(tmp_path):
    detach = DETACH.format(marker=MARKER, grades=str(tmp_path / "grades.csv"))
    hang = _prefix(detach, "import signal\nsignal.setitimer(signal.ITIMER_REAL, 0)\nwhile True:\n    pass")
    folders = _write(tmp_path, {"a": {"diffusion.py": _prefix(detach)}, "b": {"diffusion.py": hang},
                                "c": {"diffusion.py": hang}})
    out, work = tmp_path / "grades.csv", tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "COURSE_SOLUTIONS"}
    command = [sys.executable, "-m", "course", "grade", *folders, "--out", str(out), "--only", "diffusion",
               "--timeout", "30", "--workdir", str(work), "--allow-processes"]  # so that the reaper has work
    # Start it as a terminal does, with Ctrl-C at its default: a process started with SIGINT ignored (as a test
    # runner's worker may leave it, or a shell's background job) inherits that, and Python then never raises
    # KeyboardInterrupt, so the grader would finish its work instead of stopping.
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and len(out.read_text().splitlines()) >= 1 + len(DIFFUSION):
            break
        time.sleep(0.2)
    time.sleep(2)  # b is now inside its hanging q_sample, its detached child started
    finished_first = proc.poll() is not None  # then grades.csv never showed a's rows while the grader ran
    proc.send_signal(2)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, (f"finished before Ctrl-C: {finished_first}\nstdout:\n{stdout}\nstderr:\n{stderr}"
                                    f"\ngrades.csv: {out.read_bytes()[:2000]!r}")
    rows = list(csv.DictReader(out.open()))
    assert [Path(r["submission"]).name for r in rows] == ["a"] * len(DIFFUSION)
    assert all(r["passed"] == "True" for r in rows)
    time.sleep(1)
    assert _leftovers() == []
    assert list(work.iterdir()) == []
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["grading"]["interrupted"] and not report["grading"]["complete"]


def test_verify_re_decides_a_pass_from_the_recorded_values():
    import torch

    from course.grader.sandbox import verify

    want = torch.tensor([1.0, 2.0, 3.0])
    records = [{"kind": "close", "what": "the output", "atol": 1e-5, "rtol": 1e-4, "check_dtype": True, "want": want},
               {"kind": "tensor", "what": "x", "shape": [2], "dtype": "torch.float32", "device": "cpu",
                "finite": False}]
    assert verify(records, [want + 1e-7, torch.tensor([float("nan"), 0.0])]) is None
    assert "differs" in verify(records, [want + 0.1, torch.zeros(2)])
    assert "dtype" in verify(records, [want.double(), torch.zeros(2)])
    assert "NaN" in verify(records, [want * float("nan"), torch.zeros(2)])
    assert "shape" in verify(records, [want, torch.zeros(3)])
    assert "no tensor" in verify(records, [want, None])
    assert "could not be confirmed" in verify(records, [want])
    assert "could not be confirmed" in verify(records, "forged")


def test_correct_code_that_draws_random_numbers_is_not_refused(tmp_path):
    """The grader's re-decision compares with the reference's run: inputs a check draws without reseeding after the
    learner's call must not differ between the two (the sandbox reseeds after each comparison)."""
    lines = []
    for line in (SOLUTIONS_DIR / "layers.py").read_text().splitlines():
        lines.append(line)
        if line.strip() == "# BEGIN SOLUTION":
            lines.append(line.replace("# BEGIN SOLUTION", "torch.rand(3)"))
    source = "\n".join(lines) + "\n"
    folder = tmp_path / "sub"
    folder.mkdir()
    (folder / "layers.py").write_text(source)
    proc = cli("check", "layers.attention", "layers.patchify", "--impl", str(folder), "--json", "--workdir",
               str(tmp_path))
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert proc.returncode == 0 and all(r["passed"] for r in rows), proc.stdout + proc.stderr


def _edit(module: str, old: str, new: str) -> str:
    source = (SOLUTIONS_DIR / f"{module}.py").read_text()
    assert source.count(old) == 1, old
    return source.replace(old, new)


def _insert(module: str, name: str, code: str) -> str:
    """The reference of `module` with `code` run first in exercise `name`'s block (indented like the block)."""
    from course.grader.exercises import find_blocks

    source = (SOLUTIONS_DIR / f"{module}.py").read_text()
    block = next(b for b in find_blocks(source, module) if b.exercise == name)
    lines = source.splitlines()
    lines.insert(block.begin, textwrap.indent(textwrap.dedent(code), block.indent).rstrip("\n"))
    return "\n".join(lines) + "\n"


FIND_IN_FRAMES = """
    import sys
    frame = sys._getframe(1)
    while type(frame.f_locals.get("ref")).__name__ != "module" and "want" not in frame.f_locals:
        frame = frame.f_back  # up to the check's frame: its `ref` is the reference, its `want` the expected value
    if "want" in frame.f_locals:
        return frame.f_locals["want"]
    return frame.f_locals["ref"].{call}
    """
FIND_WITH_GC = """
    import gc, sys
    def _looks_right(o):
        try:
            return o.__qualname__ == "{qualname}" and "solutions" in o.__code__.co_filename
        except Exception:
            return False
    found = [o for o in gc.get_objects() if _looks_right(o)]
    found += [getattr(m, "{qualname}".split(".")[0]) for m in list(sys.modules.values())
              if "solutions" in str(getattr(m, "__file__", "")) and hasattr(m, "{qualname}".split(".")[0])]
    return found[0]{rest}
    """


SILENCE = """
import sys
for _m in ("course.grader.checks.dit", "course.grader.checks.latent"):
    if _m in sys.modules:
        sys.modules[_m].expect = lambda *a, **k: None
if "course.grader.checks.kit" in sys.modules:
    sys.modules["course.grader.checks.kit"]._close = lambda *a, **k: True
    _rules = sys.modules["course.grader.grading"].RULES
    for _k in _rules:
        _rules[_k] = lambda *a, **k: None
"""

# The exercises the probe's cheats target (the class is graded on these only).
PROBED = ["diffusion.q_sample", "dit.modulate", "dit.LabelEmbedder.token_drop", "dit.DiT.initialize_weights",
          "latent.latent_scale", "uvit.UViT.forward"]


def _probes() -> tuple[dict, dict]:
    """The probe's class: {name: {file: text}} and {name: {exercise it cheats: a fragment of that row's message}}.

    Every submission holds diffusion.py, dit.py, latent.py and uvit.py, the reference's but for what it changes: a
    cheat must lose exactly the exercises it cheats and keep the others."""
    reference = {f"{m}.py": (SOLUTIONS_DIR / f"{m}.py").read_text() for m in ("diffusion", "dit", "latent", "uvit")}
    subs, cheats = {}, {}

    def add(name, cheated=None, **files):
        subs[name] = dict(reference, **{f"{module}.py": text for module, text in files.items()})
        cheats[name] = cheated or {}

    add("correct")
    add("correct_written_differently", diffusion=_written_differently())
    # The reference imported by name (a dit.py that is only `from solutions.dit import *` once scored 7/7), by path,
    # exec'd from its source or unmarshalled from its .pyc: the child cannot read it.
    add("imports_reference", {e: "could not be imported" for e in PROBED if e.startswith(("diffusion.", "dit."))},
        diffusion="from solutions.diffusion import *  # noqa\n", dit="from solutions.dit import *  # noqa\n")
    snapshot = "os.path.dirname(os.path.dirname(course.__file__))"
    add("imports_reference_by_path", {"diffusion.q_sample": "PermissionError"}, diffusion=_q(f"""
        import course, importlib.util, os
        spec = importlib.util.spec_from_file_location("copy", os.path.join({snapshot}, "solutions", "diffusion.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.q_sample(x0, t, noise, alphas_cumprod)
        """))
    add("execs_reference", {"diffusion.q_sample": "PermissionError"}, diffusion=_q(f"""
        import course, os
        path, ns = os.path.join({snapshot}, "solutions", "diffusion.py"), {{}}
        exec(compile(open(path).read(), path, "exec"), ns)
        return ns["q_sample"](x0, t, noise, alphas_cumprod)
        """))
    add("unmarshals_reference", {"diffusion.q_sample": "PermissionError"}, diffusion=_q(f"""
        import course, marshal, os, sys
        name = f"diffusion.cpython-{{sys.version_info[0]}}{{sys.version_info[1]}}.pyc"
        ns = {{}}
        exec(marshal.loads(open(os.path.join({snapshot}, "solutions", "__pycache__", name), "rb").read()[16:]), ns)
        return ns["q_sample"](x0, t, noise, alphas_cumprod)
        """))
    # The reference and the expected values looked for in memory (frames up to the check's `ref` or `want`;
    # gc.get_objects() and sys.modules): they live in the checker, another process.
    targets = {"diffusion": ("diffusion.q_sample", "q_sample", "(x0, t, noise, alphas_cumprod)"),
               "dit": ("dit.modulate", "modulate", "(x, shift, scale)"),
               "uvit": ("uvit.UViT.forward", "UViT.forward", "(self, x, t, y)")}
    add("frames", {"diffusion.q_sample": "AttributeError", "dit.modulate": "", "uvit.UViT.forward": ""},
        **{m: _insert(m, e, FIND_IN_FRAMES.format(call=q + a)) for m, (e, q, a) in targets.items()})
    add("gc", {"diffusion.q_sample": "IndexError", "dit.modulate": "", "uvit.UViT.forward": ""},
        **{m: _insert(m, e, FIND_WITH_GC.format(qualname=q, rest=a)) for m, (e, q, a) in targets.items()})
    # The three checks once decided in the child only: token_drop returning zeros, an initialize_weights without its
    # xavier step, latent_scale returning 1.0, with the checks silenced in the child (their `expect`, the kit's
    # closeness, the rules).
    dit = _edit("dit", "        self.apply(_basic_init)\n", "").replace(
        "        if force_drop_ids is not None:\n            drop_ids = force_drop_ids == 1",
        "        return torch.zeros_like(labels)\n        if force_drop_ids is not None:\n"
        "            drop_ids = force_drop_ids == 1", 1)
    latent = _edit("latent", "    return float(1.0 / latents.float().std())\n", "    return 1.0\n")
    add("silenced", dict.fromkeys(["dit.LabelEmbedder.token_drop", "dit.DiT.initialize_weights",
                                   "latent.latent_scale"], ""),
        dit=dit.replace(FUTURE, FUTURE + SILENCE, 1), latent=latent.replace(FUTURE, FUTURE + SILENCE, 1))
    # Forged results: a pass of a wrong q_sample with tensors on the meta device or sparse (once a crashed run), and
    # a NaN time on a correct one (once in grades.csv and an invalid grades.json).
    for kind, items in (("meta", "[torch.zeros(3, device='meta') for _ in obj['items']]"),
                        ("sparse", "[torch.zeros(3).to_sparse() for _ in obj['items']]")):
        add(f"forge_{kind}_tensors", {"diffusion.q_sample": "swapped"},
            diffusion=_prefix(FORGE_ITEMS.format(items=items), WRONG))
    add("nan_seconds", diffusion=_prefix(FORGE_ITEMS.format(items="obj['items']")))
    # IPC that would outlive the child (SysV, POSIX queues and shared memory), memory outside RLIMIT_AS, the grader's
    # /proc, capabilities: a correct q_sample that fails when any of them is allowed.
    add("ipc_proc_and_capabilities", diffusion=_q("""
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        found = [name for name, call in (("shmget", lambda: libc.shmget(0, 4096, 0o1000 | 0o600)),
                                         ("semget", lambda: libc.semget(0, 1, 0o1000 | 0o600)),
                                         ("msgget", lambda: libc.msgget(0, 0o1000 | 0o600)),
                                         ("mq_open", lambda: libc.mq_open(NAME.encode(), 0o100 | 2, 0o600, None)))
                 if call() >= 0]
        try:
            import _posixshmem
            os.close(_posixshmem.shm_open(NAME, os.O_CREAT | os.O_RDWR, 0o600))
            found.append("shm_open")
        except (OSError, ImportError):
            pass
        try:
            os.memfd_create("x")
            found.append("memfd_create")
        except (OSError, AttributeError):
            pass
        for pid in [p for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]:
            for what in ("environ", "maps"):
                try:
                    with open(f"/proc/{pid}/{what}", "rb") as f:
                        found += [f"{what} of {pid}"] if f.read(64) else []
                except OSError:
                    pass
        caps = [line.split()[1] for line in open("/proc/self/status") if line.startswith(("CapEff", "CapPrm"))]
        found += [f"capabilities {caps}"] if any(int(c, 16) for c in caps) else []
        if found:
            raise ValueError("allowed: " + ", ".join(found[:6]))
        """.replace("NAME", repr(PROBE_IPC_NAME)) + Q_SAMPLE_BODY.strip()))
    return subs, cheats


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} in the JSON report")
    return value


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox's fences are Linux's")
def test_the_probes_class_is_graded_in_one_run(tmp_path):
    """Issue 25's done-when: a class made of the probe's kinds of submission (the reference imported, exec'd,
    unmarshalled, found through frames or gc/sys.modules; the three checks once decided in the child only; forged
    meta and sparse results; a NaN time; IPC that would outlive the child), graded in one run beside correct
    submissions, gives every cheat 0 points on what it cheats (and full points on the rest), every correct
    submission full points, one row per submission and exercise, no NaN in grades.csv or grades.json (a strict
    JSON), and leaves no SysV or POSIX IPC object behind. The copy flags name the cheats that read the reference."""
    subs, cheats = _probes()
    folders = _write(tmp_path, subs)
    out, work = tmp_path / "grades.csv", tmp_path / "work"
    work.mkdir()
    _probe_ipc_left()  # what an earlier run may have left is not this run's
    ipc_before = _ipc_objects()
    start = time.monotonic()
    proc = cli("grade", *folders, "--out", str(out), "--only", *PROBED, "--jobs", "2", "--workdir", str(work),
               cwd=tmp_path, timeout=900)
    took = time.monotonic() - start
    ipc_after, probe_ipc_left = _ipc_objects(), _probe_ipc_left()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert sorted((Path(r["submission"]).name, r["exercise"]) for r in rows) == sorted(
        (name, e) for name in subs for e in PROBED)
    flagged = {"correct_written_differently": {"diffusion.q_sample": []},
               "imports_reference": {e: ["imports-reference"] for e in cheats["imports_reference"]},
               "frames": {e: ["introspection"] for e in cheats["frames"]},
               "gc": {e: ["imports-reference", "introspection"] for e in cheats["gc"]}}
    wrong = []
    for r in rows:
        name, exercise = Path(r["submission"]).name, r["exercise"]
        cheated = exercise in cheats[name]
        if (r["passed"], float(r["points"])) != (str(not cheated), 0.0 if cheated else 1.0):
            wrong.append(f"{name} {exercise}: passed {r['passed']}, {r['points']} points: {r['message'][:200]}")
        if cheats[name].get(exercise, "") not in r["message"] or "grader's own comparison" in r["message"]:
            wrong.append(f"{name} {exercise}: {r['message'][:200]}")
        for key, value in r.items():
            try:
                number = float(value)
            except ValueError:
                continue
            if not math.isfinite(number) or (key == "seconds" and number < 0):
                wrong.append(f"{name} {exercise}: {key} {value}")
        if exercise in flagged.get(name, {}) and r["flags"].split() != flagged[name][exercise]:
            wrong.append(f"{name} {exercise}: flags {r['flags']!r}, expected {flagged[name][exercise]}")
    assert not wrong, "\n".join(wrong)
    assert ipc_after == ipc_before and probe_ipc_left == []
    report = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"), parse_constant=_no_constants,
                        parse_float=_finite)
    assert report["grading"]["complete"] and not report["grading"]["problems"]
    assert report["grading"]["checks_in_learners_process"] == []
    assert len(report["submissions"]) == len(subs)
    assert {Path(s["submission"]).name: (s["score"], s["total"], len(s["results"])) for s in report["submissions"]} == {
        name: (len(PROBED) - len(c), len(PROBED), len(PROBED)) for name, c in cheats.items()}
    print(f"graded {len(subs)} submissions x {len(PROBED)} exercises in {took:.0f} s (2 jobs)")


ACROSS_THE_WIRE = """
import json, sys, tempfile
from pathlib import Path
import torch
torch.set_num_threads(1)  # before any work: the test forks this process
from course.grader import bridge
from course.grader.checks.kit import all_mistakes
from course.grader.exercises import SOLUTIONS_DIR, _set, exercises, load_module
from course.grader.grading import _clean, load_exercise, run_exercise

out = {"reference": {}, "mistakes": []}
for name in exercises():
    impl = load_module(name.split(".", 1)[0], SOLUTIONS_DIR, isolate=name)
    out["reference"][name] = bridge.check_in_fork(name, impl)
for m in all_mistakes():
    module, qualname = m.exercise.split(".", 1)
    with tempfile.TemporaryDirectory() as tmp:
        if m.code is not None:
            impl = load_module(module, SOLUTIONS_DIR, isolate=m.exercise)
            _set(impl, qualname, m.code)
            here = run_exercise(m.exercise, impl=impl)
        else:
            (Path(tmp) / f"{module}.py").write_text((SOLUTIONS_DIR / f"{module}.py").read_text().replace(*m.edit))
            impl = load_exercise(m.exercise, Path(tmp))[0]
            here = run_exercise(m.exercise, tmp)
        passed, message = bridge.check_in_fork(m.exercise, impl)
    out["mistakes"].append([str(m), here.passed, here.message, passed, _clean(message)])
json.dump(out, sys.stdout)
"""


def _unlocated(message: str) -> str:
    """`message` without its first " (at file.py line N: ...)"."""
    start = message.find(" (at ")
    depth = 0
    for i in range(start + 1, len(message) if start >= 0 else 0):
        depth += {"(": 1, ")": -1}.get(message[i], 0)
        if depth == 0:
            return message[:start] + message[i + 1:]
    return message


def test_every_check_gives_the_same_verdicts_across_the_wire():
    """Why the checks can run in the checker: with the code under test served by another process and reached only
    through the wire (`bridge.check_in_fork`), the reference passes every check, and every declared mistake fails
    with the same message as when the check and the code share one process. (A declared mistake's code lives in
    the checks' file, which only the run in one process takes for the learner's and points at: the location of a
    raise is left out of the comparison; a learner's own file is located both ways.)"""
    proc = subprocess.run([sys.executable, "-c", ACROSS_THE_WIRE], capture_output=True, text=True, cwd=ROOT,
                          timeout=1200, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert len(out["reference"]) >= 42
    assert {n: r for n, r in out["reference"].items() if not r[0]} == {}
    assert len(out["mistakes"]) >= 2 * len(out["reference"])
    differ = [m for m in out["mistakes"] if m[1] or m[1] != m[3] or _unlocated(m[2]) != _unlocated(m[4])]
    assert differ == [], differ[:5]


def test_nothing_a_child_sends_breaks_the_comparison():
    import torch

    from course.grader.sandbox import finite_seconds, verify

    records = [{"kind": "close", "what": "the output", "atol": 1e-5, "rtol": 1e-4, "check_dtype": False,
                "want": torch.zeros(3)}]
    for forged in (torch.zeros(3, device="meta"), torch.zeros(3).to_sparse(), torch.zeros(3, dtype=torch.complex64),
                   torch.zeros(1).expand(1 << 40), torch.zeros(3).as_subclass(type("Sub", (torch.Tensor,), {})),
                   "zeros", None, [torch.zeros(3)]):
        problem = verify(records, [forged])
        assert isinstance(problem, str) and problem, forged
    assert verify(records, [torch.zeros(3)]) is None
    assert "compared nothing" in verify([], [])
    rule = [{"kind": "rule", "what": "`w`", "rule": "zero", "params": {}, "shape": [4], "dtype": "torch.float32"}]
    assert verify(rule, [torch.zeros(4)]) is None
    assert "all zeros" in verify(rule, [torch.ones(4)])
    assert "shape" in verify(rule, [torch.zeros(0)])  # an empty tensor is not "all zeros" of the reference's shape
    assert [finite_seconds(v, 1.5) for v in (float("nan"), float("inf"), -1.0, "2", True, 0.25)] == [1.5] * 5 + [0.25]


def test_nothing_a_child_sends_over_the_wire_breaks_the_checker():
    """The checker reads only JSON headers and raw buffers it checks itself: whatever a child writes on its pipe
    (garbage, huge sizes, deep nesting, tensors of other dtypes or impossible shapes, unknown handles, forged errors)
    ends the check as the child's failure (or as the child gone), never as an error of the checker's."""
    import struct
    import threading

    from course.grader import bridge

    ready = ({"ready": 1}, [])
    value = [({"value": v}, b) for v, b in (
        ({"t": 0, "dtype": "complex64", "shape": [2]}, [b"\0" * 16]),
        ({"t": 0, "dtype": "float32", "shape": [1 << 40]}, [b"\0" * 4]),
        ({"t": 0, "dtype": "float32", "shape": [-1]}, [b""]),
        ({"t": 3, "dtype": "float32", "shape": [1]}, [b"\0" * 4]),
        ({"t": 0, "dtype": "float32", "shape": [3]}, [b"\0" * 4]),
        ({"mine": "x"}, []), ({"yours": 12345}, []), ({"D": [[{"L": []}, 1]]}, []), ({"nope": 1}, []),
        (json.loads("[" * 60 + "]" * 60), []), (float("nan"), []),
    )]
    errors = [({"error": e}, []) for e in ("forged", {"type": "SystemExit", "code": [1]},
                                              {"type": "KeyboardInterrupt"}, {"type": "__import__", "text": "x"})]
    raw = [b"\xff" * 20, struct.pack("<Q", 5) + b"{not}", struct.pack("<Q", 2) + b"[]"]
    for case in [[f] for f in value + errors] + [[b] for b in raw]:
        to_checker_r, to_checker_w = os.pipe()
        from_checker_r, from_checker_w = os.pipe()

        def child(frames=case, fd=to_checker_w):
            for f in [ready] + frames:
                if isinstance(f, bytes):
                    os.write(fd, f)
                else:
                    bridge.write_frame(fd, *f)
            os.close(fd)

        def drain(fd=from_checker_r):
            while os.read(fd, 1 << 16):
                pass

        threads = [threading.Thread(target=child), threading.Thread(target=drain)]
        for t in threads:
            t.start()
        try:
            passed, message = bridge.check_remote("diffusion.cfg_eps", to_checker_r, from_checker_w, 10)
            assert passed is False and isinstance(message, str), case
        except bridge.Gone:
            pass
        finally:
            os.close(from_checker_w)
            os.close(to_checker_r)
            for t in threads:
                t.join()
            os.close(from_checker_r)


def test_the_runner_that_forks_the_children_holds_no_reference_and_no_check(tmp_path):
    """The runner reports what it imported from `solutions/`, `given/` or the checks (nothing: a worker whose
    runner holds any is refused), and the helper that says so sees a process that does hold them."""
    from course.grader.exercises import ROOT, reference_module
    from course.grader.grading import registry
    from course.grader.sandbox import Grader, _references_held

    grader = Grader(["diffusion.q_sample"], workdir=tmp_path)
    try:
        worker = grader._idle[0]
        assert worker.runner.holds == [] and grader.isolated == {"diffusion.q_sample"}
    finally:
        grader.close()
    reference_module("diffusion")
    registry()
    held = _references_held(str(ROOT))
    assert any(n.endswith(".diffusion") and n.startswith("_course_impl_") for n in held), held
    assert "course.grader.checks.diffusion" in held and "course.grader.checks.kit" not in held


def test_copy_flags_name_what_reads_or_repeats_the_reference():
    from course.grader.exercises import exercises
    from course.grader.sandbox import copy_flags

    names = exercises("diffusion")
    flags = copy_flags(SOURCE, "diffusion", names)
    assert flags["diffusion.q_sample"] == ["same-as-reference"]
    renamed = SOURCE.replace(Q_SAMPLE_BODY, "    a_t = a\n    return a_t.sqrt() * x0 + (1 - a_t).sqrt() * noise\n")
    assert copy_flags(SOURCE.replace("x0", "image").replace("noise", "eps"), "diffusion", names)[
        "diffusion.q_sample"] == ["same-as-reference"]  # names and formatting do not hide it
    assert copy_flags(renamed, "diffusion", names)["diffusion.q_sample"] == []
    assert not any(copy_flags(student_source("diffusion"), "diffusion", names).values())
    assert copy_flags("import solutions.diffusion as d\n", "diffusion", names) == {
        n: ["imports-reference"] for n in names}
    exec_path = _q("return eval(open('/x/solutions/diffusion.py').read())")
    assert copy_flags(exec_path, "diffusion", names)["diffusion.q_sample"] == ["imports-reference", "introspection"]
    assert copy_flags(exec_path, "diffusion", names)["diffusion.cfg_eps"] == []
    assert copy_flags("def q_sample(:\n", "diffusion", names) == {n: [] for n in names}


def test_a_child_left_without_a_result_by_the_disk_or_the_grader_is_not_the_learners_failure(tmp_path):
    from course.grader.sandbox import _GRADER_FAILED, Grader

    ours = Grader._our_failure
    assert "file system was (nearly) full" in ours(None, {"code": 0, "low_disk": True}, None)
    assert "grader's own code failed" in ours(None, {"code": _GRADER_FAILED}, None)
    assert ours(None, {"code": 0}, None) == ""  # os._exit(0) in the learner's code: its own failure
    assert ours(None, {"code": 0, "low_disk": True}, {"mode": "learner"}) == ""  # a result came back
    assert ours(None, {"killed": True, "low_disk": True}, None) == ""  # stopped at the time limit


def test_a_check_that_compares_nothing_is_reported_not_believed(tmp_path):
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "blind.py").write_text("from course.grader.checks.kit import expect\n"
                                    "from course.grader.grading import exercise\n"
                                    "@exercise('diffusion/blind')\n"
                                    "def check(impl, ref):\n    expect(impl.q_sample is not None, 'no q_sample')\n")
    out = tmp_path / "grades.csv"
    proc = cli("grade", str(submission(tmp_path)), "--out", str(out), "--only", "diffusion.cfg_eps", "--extra",
               str(extra), "--workdir", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 3 and "compares no value" in proc.stderr
    rows = list(csv.DictReader(out.open()))
    assert [r["passed"] for r in rows] == ["True", "False"] and "not graded" in rows[1]["message"]
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["grading"]["unverified_checks"] == ["diffusion/blind"]
