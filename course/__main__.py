"""The course's command line: `python -m course {list,check,progress,grade,generate,judge}`."""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

from course.exercises import CHAPTER_OF, COURSE_DIR, exercises, generate, modules


def cmd_list(args) -> int:
    for name in exercises():
        print(f"{CHAPTER_OF[name.split('.')[0]]:<14} {name}")
    return 0


def cmd_check(args) -> int:
    from course.grading import resolve_targets, run_exercise

    try:
        names = resolve_targets(args.targets)
    except KeyError as e:
        print(e.args[0], file=sys.stderr)
        return 2
    impl = Path(args.impl) if args.impl else COURSE_DIR
    if not impl.is_dir():
        print(f"--impl {impl}: no such folder", file=sys.stderr)
        return 2
    ok = True
    for name in names:
        result = run_exercise(name, impl, timeout=args.timeout)
        ok &= result.passed
        print(json.dumps(result.as_dict()) if args.json else result, flush=True)
    if not args.json:
        print(f"{'all' if ok else 'not all'} of {len(names)} check(s) passed")
    return 0 if ok else 1


def cmd_progress(args) -> int:
    from course.grading import run_exercise

    impl = Path(args.impl) if args.impl else COURSE_DIR
    for module in modules():
        results = [run_exercise(name, impl, timeout=args.timeout) for name in exercises(module)]
        done = sum(r.passed for r in results)
        bar = "#" * done + "." * (len(results) - done)
        print(f"{CHAPTER_OF[module]:<14} {module:<10} [{bar}] {done}/{len(results)}")
        for r in results:
            if not r.passed and not r.message.startswith("Exercise `"):
                print(f"{'':<26}{r.exercise}: {r.message[:110]}")
    return 0


def cmd_grade(args) -> int:
    """Grade each submission folder in its own process, with a time limit, into one CSV."""
    rows, names = [], exercises()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(COURSE_DIR.parent), os.environ.get("PYTHONPATH", "")])}
    env.pop("COURSE_SOLUTIONS", None)
    for folder in args.submissions:
        found = {}
        try:
            proc = subprocess.run([sys.executable, "-m", "course", "check", "all", "--impl", folder, "--json",
                                   "--timeout", str(args.timeout)], capture_output=True, text=True,
                                  timeout=args.submission_timeout, env=env)
            for line in proc.stdout.splitlines():
                if line.startswith("{"):
                    item = json.loads(line)
                    found[item["exercise"]] = item
            problem = proc.stderr.strip().splitlines()[-1] if proc.returncode not in (0, 1) and proc.stderr else ""
        except subprocess.TimeoutExpired:
            problem = f"the submission took longer than {args.submission_timeout} s in all"
        for name in names:
            item = found.get(name) or {"exercise": name, "passed": False, "seconds": 0.0,
                                       "message": f"not graded: {problem or 'the grader stopped before it'}"}
            rows.append({"submission": folder, **item})
        score = sum(found.get(n, {}).get("passed", False) for n in names)
        print(f"{folder}: {score}/{len(names)}")
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["submission", "exercise", "passed", "seconds", "message"])
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {args.out} ({len(rows)} rows)")
    return 0


def cmd_generate(args) -> int:
    changed = generate(args.modules or None, check_only=args.check)
    if args.check:
        if changed:
            print("course/ is out of date with solutions/ for: " + ", ".join(changed) +
                  ". Run `python -m course generate`.", file=sys.stderr)
            return 1
        print("course/ is in sync with solutions/")
        return 0
    print("regenerated: " + (", ".join(changed) if changed else "nothing (already in sync)"))
    return 0


def cmd_judge(args) -> int:
    from course.metrics import load_judge

    judge = load_judge(args.size, retrain=args.retrain, verbose=True)
    print(f"judge for {args.size}x{args.size} digits: test accuracy {judge.test_accuracy:.2%}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course", description="Diffusion Transformers from scratch.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list every exercise").set_defaults(fn=cmd_list)
    p = sub.add_parser("check", help="grade exercises against the reference")
    p.add_argument("targets", nargs="*", default=["all"], help="all, a module (dit) or an exercise (dit.modulate)")
    p.add_argument("--impl", help="grade the exercise modules in this folder instead of course/")
    p.add_argument("--json", action="store_true", help="print one JSON object per exercise")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds allowed per check (default 60)")
    p.set_defaults(fn=cmd_check)
    p = sub.add_parser("progress", help="what is done, chapter by chapter")
    p.add_argument("--impl")
    p.add_argument("--timeout", type=float, default=60.0)
    p.set_defaults(fn=cmd_progress)
    p = sub.add_parser("grade", help="grade submission folders, each in its own process, into a CSV")
    p.add_argument("submissions", nargs="+")
    p.add_argument("--out", default="grades.csv")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds allowed per check")
    p.add_argument("--submission-timeout", type=float, default=1800.0, help="seconds allowed per submission")
    p.set_defaults(fn=cmd_grade)
    p = sub.add_parser("generate", help="regenerate course/'s exercise modules from solutions/")
    p.add_argument("modules", nargs="*", help="only these modules (default: all)")
    p.add_argument("--check", action="store_true", help="only report drift (exit 1)")
    p.set_defaults(fn=cmd_generate)
    p = sub.add_parser("judge", help="train (or load) the digit classifier used for accuracy and FD")
    p.add_argument("--size", type=int, default=8)
    p.add_argument("--retrain", action="store_true")
    p.set_defaults(fn=cmd_judge)
    args = parser.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
