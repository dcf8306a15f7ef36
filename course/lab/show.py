"""What an exercise section of the book shows: the code to write (signature and docstring, read from `solutions/`
when the cell runs, never copied by hand) and, in the built book only, the reference body folded away."""
from __future__ import annotations

import html

from course.grader.exercises import exercise_source


def _highlight(code: str) -> str:
    try:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import PythonLexer
    except ImportError:  # pygments ships with Jupyter; plain text without it
        return f"<pre>{html.escape(code)}</pre>"
    return highlight(code, PythonLexer(), HtmlFormatter(noclasses=True, nobackground=True))


class ExerciseView:
    """Shows itself as HTML in a notebook or the book, and as Markdown-like text elsewhere."""

    def __init__(self, name: str, reveal: bool):
        self.name, self.reveal = name, reveal
        self.given, self.body = exercise_source(name)

    def _repr_html_(self) -> str:
        parts = [f'<div class="course-exercise"><div style="font-size:90%;opacity:.75">You write, in '
                 f'<code>course/{self.name.split(".")[0]}.py</code>:</div>', _highlight(self.given)]
        if self.reveal:
            parts.append('<details class="course-reference"><summary>Show the reference</summary>'
                         + _highlight(self.body) + "</details>")
        parts.append("</div>")
        return "\n".join(parts)

    def __repr__(self) -> str:
        return self.given


def show_exercise(name: str) -> ExerciseView | None:
    """`show_exercise("dit.modulate")`: the signature and docstring to implement; the reference is added, folded,
    only in reference mode (the book build), so a learner's own notebook does not hand out the answer.

    In IPython it displays itself at once (so `show_exercise(...)` followed by `check(...)` in one cell shows both)
    and returns None; elsewhere it returns the view."""
    from course import reference_mode

    view = ExerciseView(name, reveal=reference_mode())
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        return view
    if get_ipython() is None:
        return view
    display(view)
    return None


def show_verdicts(*sentences, title: str = "What the record says"):
    """The verdicts a cell computed, as the learner in JupyterLab reads them under the cell: one Markdown paragraph,
    "**title:** first. Second." (each a str or a Markdown object; a missing full stop is added).

    The book's prose carries the same sentences, glued, so a cell that calls `show_verdicts` holds nothing else and
    is tagged `remove-cell`: the built page shows each verdict once (tests/test_book.py checks both). Returns the
    Markdown object, which displays itself as a cell's last value."""
    from IPython.display import Markdown

    texts = [str(getattr(s, "data", s)).strip() for s in sentences]
    return Markdown(f"**{title}:** " + " ".join(t if t.endswith((".", "!", "?")) else t + "." for t in texts if t))


def glue(name: str, value, display: bool = False):
    """Hand a measured value to the prose: `glue("dit_fd", fd)`, then write {glue:text}`dit_fd:.2f` in a markdown
    cell. The book (myst-nb) puts the number in the sentence; without myst-nb (a learner's JupyterLab) it is a
    no-op, and the cell's printed output carries the number instead. Returns the value."""
    if hasattr(value, "item") and getattr(value, "shape", None) == ():  # numpy or torch scalar -> Python number
        value = value.item()  # (myst-nb formats a glued number from its repr, and np.float64(…) is no number)
    try:
        from myst_nb import glue as _glue
    except ImportError:
        return value
    _glue(name, value, display=display)
    return value


def gpu_figures(results, elsewhere) -> str:
    """Chapter 7's GPU table, as Markdown: the course's own run (`benchmarks/bench_gpu.py --json RESULTS`: its
    provenance, then every configuration it timed) when `results` exists and reads, else the figures measured
    elsewhere (`elsewhere`, a JSON file of runs with where, when and how), each against the official recipe on its
    GPU; a `results` file that does not read is named, not a crash."""
    import json
    from pathlib import Path

    results, elsewhere = Path(results), Path(elsewhere)
    gpu, unread = None, ""
    if results.exists():
        try:
            gpu = json.loads(results.read_text())
            if not isinstance(gpu, dict) or not isinstance(gpu.get("rows"), list):
                raise ValueError("no list of rows in it")
        except (OSError, ValueError) as e:  # a broken file: say so, and show the other figures
            gpu, unread = None, f"{results} could not be read ({type(e).__name__}: {e}), so it is not shown. "
    if gpu is not None:
        lines = ["| model | configuration | img/s | × the first | TFLOP/s | MFU | warm-up (s) |",
                 "|---|---|---|---|---|---|---|"]
        first, pays = {}, []  # each model's first row that ran: the recipe for DiT, the eager loop otherwise
        for r in gpu["rows"] + gpu.get("small_model", []):
            if "error" in r:
                lines.append(f"| {r['model']} | {r['config']} | did not run: {r['error']} | | | | |")
                continue
            base = first.setdefault(r["model"], r["img_s"])
            speed = f"{r['img_s']:,.0f}" + (f" ({r['steps_s']:,.0f} steps/s)" if "steps_s" in r else "")
            tflops, mfu = (f"{r['tflops']:.0f}", f"{r['mfu']:.1%}") if "mfu" in r else ("—", "—")
            ratio = f"{r['img_s'] / base:.2f}" if base else "—"
            lines.append(f"| {r['model']} | {r['config']} | {speed} | {ratio} | {tflops} | {mfu} | "
                         f"{r['warmup_s']:.1f} |")
            if "pays_after_steps" in r:
                pays.append(f"{r['model']}'s \"{r['config']}\" pays for runs of ≥ {r['pays_after_steps']:,.0f} steps")
        cut = "" if gpu.get("complete") else " The run was cut short: these are the parts it finished."
        paid = (" Compiling costs its warm-up once and saves time on every step after it: " + "; ".join(pays) + "."
                if pays else "")
        return (f"**Measured by this course's benchmark** on {gpu.get('device', '?')} ({gpu.get('cpu_cores', '?')} "
                f"CPU cores), {gpu.get('date', '?')}, PyTorch {gpu.get('torch', '?')}: `{gpu.get('command', '?')}`."
                f"{cut}\n\n" + "\n".join(lines) + "\n\n× the first: img/s against the same model's first row "
                f"(the official recipe for DiT, the eager loop otherwise).{paid}")
    # Not the course's run: figures measured elsewhere, shown with where, when and how they were measured.
    other = json.loads(elsewhere.read_text())
    official = {(r["device"], r["code"], r["model"]): r["img_per_s"] for r in other["runs"]
                if r["recipe"] == "official" and r["batch"] == (64 if r["model"] == "DiT-XL/2" else 256)}
    lines = ["| GPU (date, PyTorch) | model code | model, batch | recipe | img/s | × the official recipe | TFLOP/s |",
             "|---|---|---|---|---|---|---|"]
    for r in other["runs"]:
        ref = official.get((r["device"], r["code"], r["model"]))
        ratio = f"{r['img_per_s'] / ref:.2f}" if ref else "—"
        lines.append(f"| {r['device']} ({r['date']}, {r['torch']}) | {r['code']} | {r['model']}, {r['batch']} | "
                     f"{other['recipes'][r['recipe']]} | {r['img_per_s']:,} | {ratio} | {r['tflops'] or '—'} |")
    return (unread + "**Measured elsewhere, not by this course's benchmark** (source: " + other["source"] + "; "
            + other["setup"] + "). The course's own GPU run replaces this table once "
            "`python benchmarks/bench_gpu.py --json benchmarks/results/gpu.json` has run on a CUDA machine.\n\n"
            + "\n".join(lines))
