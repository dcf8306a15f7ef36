"""The course's command line: `python -m course {list,check,hint,progress,grade,study,generate,judge}`."""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

from course.grader.exercises import CHAPTER_OF, COURSE_DIR, exercises, generate, modules


def cmd_list(args) -> int:
    for name in exercises():
        print(f"{CHAPTER_OF[name.split('.')[0]]:<14} {name}")
    return 0


def _impl_folder(impl: str | None) -> Path:
    """`--impl DIR`: the folder itself, its course/, or one level down (where the exercise modules are)."""
    if not impl:
        return COURSE_DIR
    from course.grader.sandbox import locate

    layout = locate(Path(impl), modules())
    return layout.folder or Path(impl)


def cmd_check(args) -> int:
    from course.grader.grading import resolve_targets, run_exercise

    try:
        names = resolve_targets(args.targets)
    except KeyError as e:
        print(e.args[0], file=sys.stderr)
        return 2
    if args.impl and not Path(args.impl).is_dir():
        print(f"--impl {args.impl}: no such folder", file=sys.stderr)
        return 2
    if args.impl and args.json and not args.in_process:
        return _check_sandboxed(args, names)
    impl = _impl_folder(args.impl)
    ok = True
    for name in names:
        result = run_exercise(name, impl, timeout=args.timeout)
        ok &= result.passed
        print(json.dumps(result.as_dict()) if args.json else result, flush=True)
    if not args.json:
        print(f"{'all' if ok else 'not all'} of {len(names)} check(s) passed")
    return 0 if ok else 1


def _check_sandboxed(args, names) -> int:
    """`check --impl DIR --json`: the submission's code runs in sandboxed children (see course/grader/sandbox.py)."""
    from course.grader.sandbox import Grader, kill_children, set_subreaper

    set_subreaper()
    grader = None
    try:
        grader = Grader(names, timeout=args.timeout, memory_mb=args.memory_mb, workdir=args.workdir,
                        allow_processes=args.allow_processes)
        rows = grader.grade(args.impl, on_row=lambda r: print(json.dumps(r.as_dict()), flush=True))
        problems = list(grader.problems)
    except Exception as e:  # noqa: BLE001 - the grader's own failure: exit 3, never a traceback as a verdict
        print(f"grading failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 3
    finally:
        if grader is not None:
            grader.close()
        kill_children()
    for problem in problems:
        print(f"grader problem: {problem}", file=sys.stderr)
    if problems:
        return 3
    return 0 if rows and all(r.passed for r in rows) else 1


def cmd_progress(args) -> int:
    from course.grader.grading import run_exercise

    impl = _impl_folder(args.impl)
    for module in modules():
        results = [run_exercise(name, impl, timeout=args.timeout) for name in exercises(module)]
        done = sum(r.passed for r in results)
        bar = "#" * done + "." * (len(results) - done)
        print(f"{CHAPTER_OF[module]:<14} {module:<10} [{bar}] {done}/{len(results)}")
        for r in results:
            if not r.passed and not r.message.startswith("Exercise `"):
                print(f"{'':<26}{r.exercise}: {r.message[:110]}")
    return 0


def _points(path: str | None, names: list[str]) -> dict[str, float]:
    """Points per exercise: 1 each, or from a JSON file {"dit": 2, "dit.DiT.forward": 5} (exercise beats module)."""
    given = json.loads(Path(path).read_text()) if path else {}
    out = {}
    for name in names:
        module = name.split("/", 1)[0].split(".", 1)[0]
        out[name] = float(given.get(name, given.get(module, 1)))
    return out


def class_summary(rows_by_submission: dict, names: list[str]) -> dict:
    """Per exercise: how many were graded, how many passed, and the commonest failure message."""
    from collections import Counter

    summary = {}
    for name in names:
        rows = [r for rows in rows_by_submission.values() for r in rows if r.exercise == name]
        failures = Counter(r.message[:160] for r in rows if not r.passed)
        common = failures.most_common(1)
        summary[name] = {"graded": len(rows), "passed": sum(r.passed for r in rows),
                         "flagged": sum(bool(getattr(r, "flags", None)) for r in rows),
                         "pass_rate": round(sum(r.passed for r in rows) / len(rows), 4) if rows else None,
                         "common_failure": common[0][0] if common else "",
                         "common_failure_count": common[0][1] if common else 0}
    return summary


def cmd_grade(args) -> int:
    """Grade submission folders into a CSV (one row per submission and exercise, written as each submission
    finishes) and a JSON report. Each exercise of each submission runs in a sandboxed child (course/grader/sandbox.py).
    Exit status: 0 when grading itself worked (whatever the grades), 3 when it did not, 130 on Ctrl-C."""
    import threading
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from course.grader.grading import resolve_targets
    from course.grader.sandbox import Grader, GraderProblem, Row, clean_text, kill_children, set_subreaper

    try:
        names = resolve_targets(args.only or ["all"])
    except KeyError as e:
        print(e.args[0], file=sys.stderr)
        return 2
    labels = list(dict.fromkeys(args.submissions))
    out = Path(args.out)
    report_path = Path(args.report) if args.report else out.with_suffix(".json")
    set_subreaper()
    done: dict[str, list] = {}
    problems: list[str] = []
    interrupted = False
    grader = None
    lock = threading.Lock()
    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["submission", "exercise", "passed", "points", "seconds", "message", "flags"])
        f.flush()
        try:
            grader = Grader(names, timeout=args.timeout, memory_mb=args.memory_mb, jobs=args.jobs, extra=args.extra,
                            workdir=args.workdir, submission_timeout=args.submission_timeout,
                            allow_processes=args.allow_processes, disk_mb=args.disk_mb)
            points = _points(args.points, grader.names)
            guard = (f"Landlock ABI {grader.landlock}" if grader.landlock else
                     "no Landlock on this system: files and processes are not fenced (see the README)")
            print(f"grading {len(labels)} submission(s) x {len(grader.names)} check(s), {args.jobs} at a time; "
                  f"{guard}", flush=True)
            older = grader.in_learners_process()
            if older:
                print(f"these checks cannot run in the checker and run in the learner's process, where the "
                      f"reference can be found in memory (see the README): {', '.join(older)}", flush=True)

            def finish(label: str, rows: list) -> None:
                with lock:
                    for r in rows:
                        writer.writerow([clean_text(label, 300), r.exercise, r.passed, points[r.exercise] if r.passed
                                         else 0.0, f"{r.seconds:.3f}", clean_text(r.message, 500), " ".join(r.flags)])
                    f.flush()
                    os.fsync(f.fileno())
                    done[label] = rows
                score = sum(points[r.exercise] for r in rows if r.passed)
                print(f"{clean_text(label, 120)}: {score:g}/{sum(points.values()):g}", flush=True)

            with ThreadPoolExecutor(max(1, args.jobs)) as pool:
                futures = {pool.submit(grader.grade, label): label for label in labels}
                try:
                    for future in as_completed(futures):
                        label = futures[future]
                        try:
                            rows = future.result()
                        except Exception as e:  # noqa: BLE001 - the grader failed on this submission: rows, exit 3
                            problems.append(f"{label}: {type(e).__name__}: {e}")
                            rows = [Row(label, n, False, clean_text(f"not graded: {e}", 300)) for n in grader.names]
                        finish(label, rows)
                except KeyboardInterrupt:
                    interrupted = True
                    grader.closed = True
                    for future in futures:
                        future.cancel()
                    grader.close(force=True)
                    raise
        except KeyboardInterrupt:
            interrupted = True
            print("interrupted: the rows of the submissions graded so far are in the CSV", file=sys.stderr)
        except GraderProblem as e:
            problems.append(str(e))
        finally:
            if grader is not None:
                problems += grader.problems
                grader.close(force=interrupted)
            kill_children()
    names_graded = grader.names if grader is not None else names
    if grader is not None:
        points = _points(args.points, names_graded)
        summary = class_summary(done, names_graded)
        report = {
            "exercises": names_graded,
            "points": points,
            "submissions": [{"submission": clean_text(label, 300),
                             "score": sum(points[r.exercise] for r in done[label] if r.passed),
                             "total": sum(points.values()),
                             "results": [{"exercise": r.exercise, "passed": r.passed,
                                          "points": points[r.exercise] if r.passed else 0.0,
                                          "seconds": round(r.seconds, 3), "message": r.message, "verified": r.verified,
                                          "output": clean_text(r.output, 500), "flags": r.flags}
                                         for r in done[label]],
                             "flagged": sum(bool(r.flags) for r in done[label])}
                            for label in labels if label in done],
            "summary": summary,
            "grading": {"timeout": args.timeout, "memory_mb": args.memory_mb, "landlock": grader.landlock,
                        "unverified_checks": grader.unverified(),
                        "checks_in_learners_process": grader.in_learners_process(),
                        "problems": [clean_text(p, 500) for p in problems],
                        "interrupted": interrupted, "complete": len(done) == len(labels)},
        }
        report_path.write_text(json.dumps(report, indent=1, ensure_ascii=False, allow_nan=False))
        print("\nclass summary (pass rate, commonest failure):")
        for name, s in summary.items():
            rate = "-" if s["pass_rate"] is None else f"{s['pass_rate']:.0%}"
            print(f"  {name:<34} {rate:>5}  {clean_text(s['common_failure'], 90)}")
        flagged = {name: s["flagged"] for name, s in summary.items() if s["flagged"]}
        if flagged:
            print("copy flags (code that reads the reference or the grader, or equals the reference; see the CSV's "
                  "flags column): " + ", ".join(f"{name} {n}" for name, n in flagged.items()))
        print(f"wrote {out} ({sum(len(r) for r in done.values())} rows) and {report_path}")
    for problem in problems:
        print(f"grader problem: {clean_text(problem, 500)}", file=sys.stderr)
    if interrupted:
        return 130
    return 3 if problems or len(done) != len(labels) else 0


def cmd_hint(args) -> int:
    from course.grader.exercises import hint_text

    try:
        print(hint_text(args.exercise, args.level, args.reset))
    except KeyError as e:
        print(e.args[0], file=sys.stderr)
        return 2
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


def cmd_weights(args) -> int:
    from course.lab.shipped import main as make

    return make()


def cmd_judge(args) -> int:
    from course.lab.metrics import load_judge

    judge = load_judge(args.size, retrain=args.retrain, verbose=True)
    print(f"judge for {args.size}x{args.size} digits: test accuracy {judge.test_accuracy:.2%}")
    return 0


def default_jobs() -> int:
    """Runs of a study at a time: one per CPU core (up to 8), one on a GPU."""
    from course.lab.config import device

    return 1 if device().type != "cpu" else max(1, min(os.cpu_count() or 1, 8))


def cmd_study(args) -> int:
    """`study KEY...` runs (or resumes) studies of record; `study --status` lists them (exit 1 unless all current)."""
    os.environ["COURSE_SOLUTIONS"] = "1"  # a record measures the reference, and its hash is the reference's
    from course.lab import studies

    results = Path(args.results) if args.results else None
    if args.status or not args.keys:
        rows = studies.status(results)
        for key, state in rows:
            print(f"{key:11s} {studies.STUDIES[key].chapter:10s} {state}")
        return 0 if all(state.startswith("current") for _, state in rows) else 1
    keys = list(studies.STUDIES) if args.keys == ["all"] else args.keys
    unknown = [k for k in keys if k not in studies.STUDIES]
    if unknown:
        print(f"unknown study {', '.join(unknown)}; known: {', '.join(studies.STUDIES)} (or all)", file=sys.stderr)
        return 2
    for key in keys:
        before = studies.load_record(key, results)
        record = studies.run(key, args.profile, results, progress=not args.quiet, jobs=args.jobs or default_jobs())
        done = "complete and current, nothing to run" if record == before else (
            f"{len(record['runs'])} runs, {'complete' if record['complete'] else 'incomplete'}")
        print(f"{key}: {done}; {studies.provenance_line(record)}")
        print(studies.table(record))
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
    p.add_argument("--memory-mb", type=int, default=4096, help="memory per sandboxed check (--impl with --json)")
    p.add_argument("--workdir", help="where the sandbox's temporary folders go (default: the system's)")
    p.add_argument("--in-process", action="store_true", help="with --impl and --json: no sandbox (trusted code)")
    p.add_argument("--allow-processes", action="store_true", help="let the code under test start processes")
    p.set_defaults(fn=cmd_check)
    p = sub.add_parser("progress", help="what is done, chapter by chapter")
    p.add_argument("--impl")
    p.add_argument("--timeout", type=float, default=60.0)
    p.set_defaults(fn=cmd_progress)
    p = sub.add_parser("grade", help="grade submission folders, each exercise in a sandboxed process, into a CSV")
    p.add_argument("submissions", nargs="+")
    p.add_argument("--out", default="grades.csv")
    p.add_argument("--report", help="the JSON report (default: the CSV's name with .json)")
    p.add_argument("--only", nargs="+", metavar="TARGET", help="grade only these (all, a module or an exercise)")
    p.add_argument("--jobs", type=int, default=1, help="submissions graded at the same time (default 1)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds allowed per check")
    p.add_argument("--submission-timeout", type=float, default=1800.0, help="seconds allowed per submission")
    p.add_argument("--memory-mb", type=int, default=4096, help="memory allowed per check (default 4096)")
    p.add_argument("--extra", help="a folder of instructor-only checks (*.py registering `module/label` checks)")
    p.add_argument("--points", help="a JSON file of points per module or exercise (default 1 each)")
    p.add_argument("--workdir", help="where the sandbox's temporary folders go (default: the system's)")
    p.add_argument("--allow-processes", action="store_true",
                   help="let the code under test start processes (they are still killed when its check ends)")
    p.add_argument("--disk-mb", type=int, default=256, help="disk space allowed per check (default 256)")
    p.set_defaults(fn=cmd_grade)
    p = sub.add_parser("hint", help="the next hint for an exercise (one level more each time)")
    p.add_argument("exercise", help="an exercise, e.g. uvit.UViT.forward")
    p.add_argument("--level", type=int, help="show this level (1 = a nudge, the last close to the recipe)")
    p.add_argument("--reset", action="store_true", help="start this exercise's hints over at level 1")
    p.set_defaults(fn=cmd_hint)
    p = sub.add_parser("study", help="run a chapter's study of record (results/KEY.json), or list them (--status)")
    p.add_argument("keys", nargs="*", help="ch2, ch3, ... or all")
    p.add_argument("--status", action="store_true", help="every study: current, stale, incomplete or missing")
    p.add_argument("--profile", choices=["ci", "cpu", "gpu"], help="the budget (default: the machine's profile)")
    p.add_argument("--results", help="the folder of the records (default: results/)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--jobs", type=int, help="runs at a time, each in a process of one thread (default: one per CPU "
                   "core, up to 8; one on a GPU)")
    p.set_defaults(fn=cmd_study)
    sub.add_parser("weights", help="retrain the judges and autoencoders the course ships (course/lab/weights/)"
                   ).set_defaults(fn=cmd_weights)
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
