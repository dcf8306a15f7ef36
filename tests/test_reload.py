"""The stale-import trap: a learner fills in a block of course/<module>.py while the notebook runs; the notebook's
next cell must use the new code, not the stub it imported before (setup() turns on autoreload for that)."""
import shutil
import textwrap
import time

import pytest

from course.grader.exercises import COURSE_DIR, ROOT

jupyter_client = pytest.importorskip("jupyter_client")


def run(kc, code: str, timeout: float = 120) -> tuple[str, str]:
    """Execute `code` in the kernel; return (stdout, error text)."""
    msg_id = kc.execute(code)
    out, err = [], []
    while True:
        msg = kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            out.append(content["text"])
        elif kind == "error":
            err.append(f"{content['ename']}: {content['evalue']}")
        elif kind == "status" and content["execution_state"] == "idle":
            return "".join(out), "".join(err)


def test_the_next_cell_runs_the_learners_edit(tmp_path, monkeypatch):
    shutil.copytree(COURSE_DIR, tmp_path / "course", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "solutions", tmp_path / "solutions", ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.delenv("COURSE_SOLUTIONS", raising=False)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    km, kc = jupyter_client.manager.start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        out, err = run(kc, "import course; print(course.__file__)\nfrom course import setup\nsetup('diffusion')")
        assert not err and str(tmp_path) in out, (out, err)
        out, err = run(kc, "import torch\nfrom course.diffusion import cfg_eps\n"
                           "cfg_eps(torch.ones(1), torch.zeros(1), 2.0)")
        assert "NotImplementedError" in err, (out, err)
        path = tmp_path / "course" / "diffusion.py"
        source = path.read_text()
        stub = next(line for line in source.splitlines()
                    if "diffusion.cfg_eps" in line and "NotImplementedError" in line)
        indent = stub[: len(stub) - len(stub.lstrip())]
        time.sleep(1.1)  # a later modification time than the import's
        answer = textwrap.indent("return eps_uncond + w * (eps_cond - eps_uncond)", indent)
        path.write_text(source.replace(stub, answer))
        out, err = run(kc, "print(float(cfg_eps(torch.ones(1), torch.zeros(1), 2.0)))")
        assert not err and out.strip() == "2.0", (out, err)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
