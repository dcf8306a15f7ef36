"""Grader benchmark: grade a generated class of 50 submissions on every exercise and print the time.

    python benchmarks/bench_grade.py                 # 50 submissions, --jobs 2 (target: ≤ 5 min on 2 cores)
    python benchmarks/bench_grade.py --n 10 --jobs 1

The class: a third complete (the reference), a third not started (the generated stubs), a third half done (each
module either the reference or the stub, at random), with one submission that hangs in a check and one that exits
at import. Every exercise of every submission runs in its own sandboxed child, its check in the checker (see
course/grader/sandbox.py).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from course.grader.exercises import SOLUTIONS_DIR, modules, student_source  # noqa: E402


def make_class(folder: Path, n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    reference = {m: (SOLUTIONS_DIR / f"{m}.py").read_text() for m in modules()}
    stubs = {m: student_source(m) for m in modules()}
    subs = []
    for i in range(n):
        kind = ("complete", "stub", "half")[i % 3]
        sub = folder / f"s{i:03d}-{kind}"
        sub.mkdir(parents=True)
        for m in modules():
            done = kind == "complete" or (kind == "half" and rng.random() < 0.5)
            (sub / f"{m}.py").write_text(reference[m] if done else stubs[m])
        subs.append(str(sub))
    hang = Path(subs[1 % n]) / "diffusion.py"
    hang.write_text(reference["diffusion"].replace(
        "def q_sample(", "import signal as _s\n\ndef q_sample(", 1).replace(
        "    return a.sqrt() * x0 + (1 - a).sqrt() * noise\n",
        "    _s.setitimer(_s.ITIMER_REAL, 0)\n    while True:\n        pass\n", 1))
    exits = Path(subs[2 % n]) / "dit.py"
    exits.write_text(reference["dit"].replace("from __future__ import annotations\n",
                                              "from __future__ import annotations\nimport os\nos._exit(0)\n", 1))
    return subs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=20.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        subs = make_class(tmp / "subs", args.n)
        out = tmp / "grades.csv"
        env = {k: v for k, v in os.environ.items() if k != "COURSE_SOLUTIONS"}
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "course", "grade", *subs, "--out", str(out), "--jobs",
                               str(args.jobs), "--timeout", str(args.timeout), "--workdir", str(tmp)],
                              cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        rows = list(csv.DictReader(out.open()))
        report = json.loads(out.with_suffix(".json").read_text())
        if proc.returncode != 0:
            print(proc.stdout[-2000:], proc.stderr[-2000:])
        n_ex = len(report["exercises"])
        passed = sum(r["passed"] == "True" for r in rows)
        print(f"graded {args.n} submissions x {n_ex} exercises ({len(rows)} rows, {passed} passed) with "
              f"--jobs {args.jobs} on {os.cpu_count()} CPU cores: {wall:.1f} s (exit status {proc.returncode}); "
              f"target <= 300 s")
        print(f"  per (submission, exercise): {wall / max(1, len(rows)) * args.jobs:.3f} s of a core; "
              f"landlock ABI {report['grading']['landlock']}; checks not re-decided by the grader: "
              f"{report['grading']['unverified_checks'] or 'none'}; checks run in the learner's process: "
              f"{report['grading'].get('checks_in_learners_process') or 'none'}")
        flagged = sum(s.get("flagged", 0) for s in report["summary"].values())
        print(f"  rows with copy flags: {flagged} (a complete submission here is the reference itself)")


if __name__ == "__main__":
    main()
