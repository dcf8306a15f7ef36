"""The book's structure: the table of contents, clean notebooks, and a section and a check cell per exercise."""
import json
import re

import pytest

from course.grader.exercises import CHAPTER_OF, ROOT, exercises, modules

NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))


def cells(path):
    return json.loads(path.read_text())["cells"]


def source(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_toc_lists_every_chapter_and_nothing_missing():
    toc = (ROOT / "_toc.yml").read_text()
    listed = re.findall(r"file:\s*(\S+)", toc) + re.findall(r"root:\s*(\S+)", toc)
    for entry in listed:
        assert (ROOT / f"{entry}.ipynb").exists() or (ROOT / f"{entry}.md").exists(), entry
    for nb in NOTEBOOKS:
        assert f"book/{nb.stem}" in listed, f"{nb.name} is not in _toc.yml"


def test_build_fails_on_cell_errors():
    config = (ROOT / "_config.yml").read_text()
    assert re.search(r"raise_on_error:\s*true", config) and re.search(r"allow_errors:\s*false", config)
    assert re.search(r"execute_notebooks:\s*(force|cache)", config)


def test_book_build_draws_figures_and_serves_its_own_scripts():
    """The kernels get the inline backend (an inherited MPLBACKEND=Agg once left the book without a figure), and
    MathJax and the widget manager come from the book's _static, not from a CDN."""
    def code(name):  # the script without its comments
        return re.sub(r"(?m)^\s*#.*$|\s#\s.*$", "", (ROOT / "tools" / name).read_text())

    assert "MPLBACKEND=module://matplotlib_inline.backend_inline" in code("book.sh")
    assert "MPLBACKEND=Agg" not in code("book.sh") + code("test.sh")
    config = (ROOT / "_config.yml").read_text()
    path = re.search(r"mathjax_path:\s*(\S+)", config)
    assert path and "://" not in path.group(1), "MathJax must be served from _static (tools/book.sh fetches it)"
    assert not re.search(r"thebe:\s*true", config)
    assert "https://" not in "".join(re.findall(r"nb_ipywidgets_js:.*?(?=\n\S|\Z)", config, flags=re.S))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_clean_and_starts_with_setup(path):
    code = [c for c in cells(path) if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "clear the outputs"
    assert "setup(" in source(code[0])
    # show_exercise displays itself and returns None: wrapped in display() it prints a stray "None" on the page
    assert not [c for c in code if "display(show_exercise(" in source(c)], "call show_exercise(...) on its own"


@pytest.mark.parametrize("module", modules())
def test_every_exercise_has_its_section_and_check_cell(module):
    path = ROOT / "book" / f"{CHAPTER_OF[module]}.ipynb"
    if not path.exists():
        pytest.fail(f"{path.name} is missing")
    all_cells = cells(path)
    for name in exercises(module):
        heading = [i for i, c in enumerate(all_cells) if c["cell_type"] == "markdown"
                   and f"## Exercise: {name}" in [line.strip() for line in source(c).splitlines()]]
        assert heading, f"no '## Exercise: {name}' section in {path.name} (the stub's message points there)"
        after = [source(c) for c in all_cells[heading[0]:] if c["cell_type"] == "code"]
        assert after and f'check("{name}")' in after[0], f"the first code cell after {name}'s section checks it"


# ---------------------------------------------------------------------------------------------------------------
# No stray output: a cell shows only what a reader needs
# ---------------------------------------------------------------------------------------------------------------
def _views() -> set[str]:
    """The course's interactive views (every public function of course.lab.widgets that returns a view)."""
    import inspect

    from course.lab import widgets

    return {name for name, f in vars(widgets).items() if inspect.isfunction(f) and not name.startswith("_")
            and f.__module__ == widgets.__name__ and "View" in str(inspect.signature(f).return_annotation)}


# A cell's last bare expression is echoed into the page. These calls are meant to be seen (display, print, a
# check's report, a view) or return None (matplotlib's layout calls); anything else must end with ";" or be assigned.
SHOWN = {"display", "print", "check", "show_exercise", "hint", "show_verdicts"}
RETURN_NONE = {"tight_layout", "show", "grid"}


def stray_outputs(code: str) -> list[str]:
    """The last statement of a code cell when it is a bare expression whose value the notebook would echo as a
    stray output ("300", "0.0267", a verdict repeated in quotes, "[Text(...)]"): e.g. `glue("n", n)` on the last line
    (glue returns its value), a method returning an object, a bare name."""
    import ast

    lines = [line for line in code.splitlines() if not line.lstrip().startswith(("%", "!"))]
    body = ast.parse("\n".join(lines)).body
    if not body or not isinstance(body[-1], ast.Expr) or code.rstrip().endswith(";"):
        return []
    value = body[-1].value
    if isinstance(value, ast.Call):
        f = value.func
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
        if name in SHOWN | _views() or (isinstance(f, ast.Attribute) and name in RETURN_NONE):
            return []
    return [ast.unparse(value).splitlines()[0][:100]]


def test_the_stray_output_detector_sees_echoed_values_and_spares_displays():
    assert stray_outputs('x = 1\nglue("n_gen", x)')
    assert stray_outputs("ax.set(xlabel='t')")
    assert stray_outputs("model")
    assert stray_outputs('print(v)\nglue("v", v)')  # the verdict twice: printed, then echoed in quotes
    assert not stray_outputs('glue("n_gen", x);')
    assert not stray_outputs('n = glue("n_gen", x)')
    assert not stray_outputs("display(Markdown(v))")
    assert not stray_outputs('check("dit")')
    assert not stray_outputs("fig, ax = plt.subplots()\nplt.tight_layout()")
    assert not stray_outputs("slider_view(frames, labels)")
    assert not stray_outputs("%matplotlib inline\nprint(1)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_cell_echoes_a_stray_value(path):
    stray = [f"cell {i}: {s}" for i, c in enumerate(cells(path)) if c["cell_type"] == "code"
             for s in stray_outputs(source(c))]
    assert not stray, ("these cells end with a bare expression whose value the page would show; end the line with "
                       "';', assign it, or display what the reader needs:\n" + "\n".join(stray))


def verdict_cells_left_in_the_book(nb_cells) -> list[str]:
    """Cells that show verdicts (`show_verdicts`) for a learner in JupyterLab but are not tagged `remove-cell`, or hold
    more than that call, so that the built page would show the sentences twice (cell output and glued prose) or lose
    something with the cell."""
    import ast

    bad = []
    for i, c in enumerate(nb_cells):
        code = source(c)
        if c["cell_type"] != "code" or "show_verdicts(" not in code:
            continue
        body = ast.parse(code).body
        only_call = len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Call) \
            and getattr(body[0].value.func, "id", None) == "show_verdicts"
        if "remove-cell" not in c.get("metadata", {}).get("tags", []) or not only_call:
            bad.append(f"cell {i}: {code.splitlines()[0][:80]}")
    return bad


def test_the_verdict_cell_detector_sees_a_verdict_left_in_the_page():
    def cell(code, tags=()):
        return {"cell_type": "code", "source": code, "metadata": {"tags": list(tags)}}

    assert verdict_cells_left_in_the_book([cell("show_verdicts(v)")])
    assert verdict_cells_left_in_the_book([cell("v = f()\nshow_verdicts(v)", ["remove-cell"])])
    assert not verdict_cells_left_in_the_book([cell("show_verdicts(v, w)", ["remove-cell"])])
    assert not verdict_cells_left_in_the_book([cell("glue('v', v)")])


def test_show_verdicts_joins_sentences_under_one_title():
    from IPython.display import Markdown

    from course.lab.show import show_verdicts

    shown = show_verdicts("U-ViT is ahead", Markdown("no record yet."), "", title="What the record says")
    assert shown.data == "**What the record says:** U-ViT is ahead. no record yet."


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_each_verdict_is_shown_once_in_the_book(path):
    """The prose glues each verdict; the cell that shows it to a learner in JupyterLab is left out of the page."""
    bad = verdict_cells_left_in_the_book(cells(path))
    assert not bad, ("these cells show verdicts that the prose also carries: give each its own cell, tagged "
                     "remove-cell, holding only the show_verdicts(...) call:\n" + "\n".join(bad))


# ---------------------------------------------------------------------------------------------------------------
# Every figure the course measures reaches the prose from the run
# ---------------------------------------------------------------------------------------------------------------
MEASURED = re.compile(r"""(?x)
      (?<![≤<])\s\d[\d,.]*\s?%                                   # a percentage (not a bound like ≤ 5 %)
    | \bFDs?\s*(?:of|=|≈|~|:|is|near|around|at)?\s*\d            # an FD value
    | (?<![≤<]\s)(?<![≤<])\b\d[\d,.]*\s?(?:s|sec|seconds|min|minutes)\b(?!/)   # a duration (not a ≤ budget)
    | \d[\d,.]*\s?(?:steps/s|img/s|it/s|images/s|samples/s)      # a speed
    | \bfactor\s(?:of\s)?\d | \d[\d.]*\s?×\s?(?:faster|slower|more|fewer|less|as)  # a ratio
""")
PAPER = re.compile(r"paper(?:s)?\s(?:report|give|find|measure|show)|reports?\b|\bpublished\b|\bFID\b", re.I)


def unglued_figures(markdown: str) -> list[str]:
    """Sentences of a markdown cell that state a measured-looking figure by hand (math, code, glue roles and
    sentences citing a paper's own figures are fine)."""
    text = re.sub(r"\$\$.*?\$\$|\$[^$]*\$|\{glue[^}]*\}`[^`]*`|`[^`]*`|<[^>]+>", " ", markdown, flags=re.S)
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n\n", text)
            if MEASURED.search(" " + s) and not PAPER.search(s)]


def test_the_figure_detector_sees_typed_figures_and_spares_glued_ones():
    assert unglued_figures("The U-Net reaches 96 % here.")
    assert unglued_figures("adaLN-Zero reaches FD 8.8 against 17–20.")
    assert unglued_figures("Training took 86 s at 9.3 steps/s.")
    assert unglued_figures("The DiT trains a factor of 14 faster.")
    assert not unglued_figures("The U-Net reaches {glue:text}`unet_acc:.1%` here.")
    assert not unglued_figures("The paper reports FID 2.27 on ImageNet 256×256.")
    assert not unglued_figures("Each chapter runs in ≤ 3 min on 2 cores with $\\beta_1 = 10^{-4}$ and patch 2.")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_measured_figure_is_typed_into_the_prose(path):
    typed = [s for c in cells(path) if c["cell_type"] == "markdown" for s in unglued_figures(source(c))]
    assert not typed, "glue these from the run (course.glue + {glue:text}`name`):\n" + "\n".join(typed)


def test_grade_summary_table_for_the_ci_job_page():
    import importlib.util

    spec = importlib.util.spec_from_file_location("grade_summary", ROOT / "tools" / "grade_summary.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    lines = ['{"exercise": "diffusion.q_sample", "passed": true, "message": "ok", "seconds": 0.1}',
             'noise from a warning',
             '{"exercise": "dit.modulate", "passed": false, "message": "expected a | b", "seconds": 0.2}']
    text = module.summary(lines)
    assert text.startswith("## Exercises: 1 of 2 pass")
    assert "| 00_diffusion | 1 / 1 |" in text and "expected a \\| b" in text and "❌ | `dit.modulate`" in text
    assert "No check ran" in module.summary([])
