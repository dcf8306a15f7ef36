"""Markdown summary of `python -m course check all --json` (one JSON object per line on stdin), for a CI job's
summary page ($GITHUB_STEP_SUMMARY): a line per chapter, then a row per exercise.

    python -m course check all --json | python tools/grade_summary.py >> "$GITHUB_STEP_SUMMARY"
"""
from __future__ import annotations

import json
import sys


def summary(lines) -> str:
    from course.grader.exercises import CHAPTER_OF

    results = []
    for line in lines:
        line = line.strip()
        if line.startswith("{"):
            results.append(json.loads(line))
    if not results:
        return "## Exercises\n\nNo check ran (did `python -m course check all --json` fail to start?).\n"
    done = sum(r["passed"] for r in results)
    out = [f"## Exercises: {done} of {len(results)} pass", "", "| chapter | passed |", "|---|---|"]
    chapters: dict[str, list[dict]] = {}
    for r in results:
        chapters.setdefault(CHAPTER_OF.get(r["exercise"].split(".")[0], "?"), []).append(r)
    for chapter, rs in chapters.items():
        out.append(f"| {chapter} | {sum(r['passed'] for r in rs)} / {len(rs)} |")
    out += ["", "| | exercise | seconds | message |", "|---|---|---|---|"]
    for r in results:
        message = " ".join(str(r.get("message", "")).split())
        message = (message[:200] + "…" if len(message) > 200 else message).replace("|", "\\|")
        out.append(f"| {'✅' if r['passed'] else '❌'} | `{r['exercise']}` | {r.get('seconds', 0):.2f} | {message} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.stdout.write(summary(sys.stdin))
