"""The chapter benchmark reads back what a notebook glued, as myst-nb stores it in an executed notebook."""
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from bench_chapter import headline  # noqa: E402
from notebook_runner import glued  # noqa: E402


def _glue_output(name: str, text: str) -> nbformat.NotebookNode:
    prefix = "application/papermill.record/"  # what myst_nb.glue writes with display=False
    return nbformat.v4.new_output("display_data", data={prefix + "text/plain": text},
                                  metadata={"scrapbook": {"mime_prefix": prefix, "name": name}})


def test_glued_values_are_read_back_as_python_values():
    cell = nbformat.v4.new_code_cell("glue(...)")
    cell.outputs = [_glue_output("profile", "'cpu'"), _glue_output("headline_acc_w1", "0.915"),
                    _glue_output("headline_fd", "1.1"), _glue_output("headline_fd_floor", "0.5"),
                    _glue_output("v_conv", "<IPython.core.display.Markdown object>"),
                    nbformat.v4.new_output("stream", text="not glued\n")]
    values = glued(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("text"), cell]))
    assert values == {"profile": "cpu", "headline_acc_w1": 0.915, "headline_fd": 1.1, "headline_fd_floor": 0.5,
                      "v_conv": "<IPython.core.display.Markdown object>"}
    line = headline(values)
    assert "acc_w1 91.5%" in line and "fd 1.10" in line and "FD / floor 2.2×" in line
    assert headline({"profile": "cpu"}) == "(no headline numbers glued)"
