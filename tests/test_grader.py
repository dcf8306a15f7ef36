"""The grader survives whatever a submission does, and its command line keeps the SYLLABUS contract."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from course.exercises import ROOT, SOLUTIONS_DIR
from course.grading import check, run_exercise

SOURCE = (SOLUTIONS_DIR / "diffusion.py").read_text()
Q_SAMPLE_BODY = "    return a.sqrt() * x0 + (1 - a).sqrt() * noise\n"


def submission(tmp_path: Path, new_body: str | None = None, text: str | None = None) -> Path:
    folder = tmp_path / "submission"
    folder.mkdir(exist_ok=True)
    source = text if text is not None else SOURCE.replace(Q_SAMPLE_BODY, new_body or Q_SAMPLE_BODY)
    (folder / "diffusion.py").write_text(source)
    return folder


def cli(*args, env=None, timeout=300):
    env = {**os.environ, **(env or {})}
    env.pop("COURSE_SOLUTIONS", None)
    return subprocess.run([sys.executable, "-m", "course", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=timeout)


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
    assert not r.passed and "missing" in r.message


def test_the_other_exercises_do_not_matter(tmp_path):
    """Each block is graded alone: a broken q_sample does not fail ddpm_loss, which uses it."""
    folder = submission(tmp_path, "    raise ValueError('broken')\n")
    assert run_exercise("diffusion.ddpm_loss", folder).passed


def test_cli_check_exit_codes_and_json(tmp_path):
    ok = cli("check", "diffusion", "--impl", "solutions", "--json")
    assert ok.returncode == 0, ok.stderr
    rows = [json.loads(line) for line in ok.stdout.splitlines()]
    assert [r["exercise"] for r in rows][:2] == ["diffusion.linear_betas", "diffusion.cosine_betas"]
    assert all(set(r) == {"exercise", "passed", "message", "seconds"} and r["passed"] for r in rows)
    stub = cli("check", "diffusion.q_sample", "--impl", "course")
    assert stub.returncode == 1 and "not done yet" in stub.stdout
    assert cli("check", "diffusion.q_sampel").returncode == 2
    listed = cli("list")
    assert listed.returncode == 0 and "diffusion.cfg_eps" in listed.stdout


def test_cli_grade_writes_one_row_per_submission_and_exercise(tmp_path):
    good = tmp_path / "good"
    good.mkdir()
    (good / "diffusion.py").write_text(SOURCE)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "diffusion.py").write_text("def broken(:\n")
    out = tmp_path / "grades.csv"
    proc = cli("grade", str(good), str(bad), "--out", str(out), "--timeout", "20")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(out.open()))
    exercises = cli("list").stdout.split()[1::2]
    assert len(rows) == 2 * len(exercises)
    passed = {(Path(r["submission"]).name, r["exercise"]): r["passed"] == "True" for r in rows}
    assert all(passed[("good", e)] for e in exercises if e.startswith("diffusion."))
    assert not any(passed[("bad", e)] for e in exercises)


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


def test_strict_mode_raises_for_nbval(monkeypatch):
    monkeypatch.setenv("COURSE_STRICT", "1")
    with pytest.raises(AssertionError, match="not done yet"):
        check("diffusion.q_sample", impl=ROOT / "course")
