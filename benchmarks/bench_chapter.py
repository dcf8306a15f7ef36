"""Run chapter notebooks end to end, as the book build does, and print what each measured.

    COURSE_PROFILE=cpu python benchmarks/bench_chapter.py 03_uvit            # one chapter (≤ 5 min on 2 cores)
    COURSE_PROFILE=cpu python benchmarks/bench_chapter.py --json out.json    # every chapter

Each notebook runs in reference mode in a fresh kernel. Printed per chapter: the notebook's wall time, its headline
numbers under the names of the book's contract (shared/SYLLABUS.md: accuracies as fractions, FD against the floor
at the same sample count, training seconds) and every other number it glued for its prose, under the names the
prose uses. Nothing here is typed in: a chapter's figures are the ones its readers see.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from notebook_runner import run_notebook

BOOK = Path(__file__).resolve().parent.parent / "book"
HEADLINE = ("headline_acc_w1", "headline_acc_w2", "headline_classifier_acc", "headline_min_class_share",
            "headline_min_acc_w1", "headline_fd", "headline_fd_floor", "headline_train_seconds")


def headline(values: dict) -> str:
    """One line of the chapter's headline numbers, in the order of the contract."""
    parts = []
    for name in HEADLINE:
        if name in values:
            v = values[name]
            text = f"{v:.1%}" if "acc" in name or "share" in name else f"{v:.2f}" if isinstance(v, float) else v
            parts.append(f"{name.removeprefix('headline_')} {text}")
    if isinstance(values.get("headline_fd"), float) and values.get("headline_fd_floor"):
        parts.append(f"FD / floor {values['headline_fd'] / values['headline_fd_floor']:.1f}×")
    return ", ".join(parts) or "(no headline numbers glued)"


def main() -> int:
    chapters = sorted(p.stem for p in BOOK.glob("[0-9][0-9]_*.ipynb"))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("chapters", nargs="*", help=f"notebook names (default: all of {', '.join(chapters)})")
    ap.add_argument("--json", type=Path, help="also write {chapter: {seconds, glued}} to this file")
    ap.add_argument("--all-glued", action="store_true", help="print every glued value, not only numbers")
    args = ap.parse_args()
    unknown = [c for c in args.chapters if c not in chapters]
    if unknown:
        ap.error(f"no such chapter: {', '.join(unknown)}; the chapters are {', '.join(chapters)}")
    report = {}
    for chapter in args.chapters or chapters:
        values, seconds = run_notebook(BOOK / f"{chapter}.ipynb")
        report[chapter] = {"seconds": seconds, "glued": values}
        print(f"{chapter}: profile {values.get('profile', '?')}, whole notebook {seconds:.0f} s", flush=True)
        print(f"  headline: {headline(values)}")
        for name, value in sorted(values.items()):
            if name in HEADLINE or name == "profile":
                continue
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                print(f"  {name}: {value:.4g}")
            elif args.all_glued:
                print(f"  {name}: {str(value)[:200]}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))
    print("total: " + " + ".join(f"{r['seconds']:.0f}" for r in report.values())
          + f" = {sum(r['seconds'] for r in report.values()):.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
