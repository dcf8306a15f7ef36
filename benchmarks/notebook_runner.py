"""Run a chapter notebook end to end in a fresh kernel (reference mode) and read back what it measured: every value
the notebook glued for its prose (myst-nb `glue`), under the names the prose uses."""
from __future__ import annotations

import ast
import os
import time
from pathlib import Path

import nbformat


def glued(nb: nbformat.NotebookNode) -> dict:
    """name -> value of every `glue(name, value)` in an executed notebook: a Python literal (number, string, list)
    where the glued text/plain is one, else that text."""
    values = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            name = output.get("metadata", {}).get("scrapbook", {}).get("name")
            text = next((v for k, v in output.get("data", {}).items() if k.endswith("text/plain")), None)
            if name and text is not None:
                try:
                    values[name] = ast.literal_eval(text)
                except (ValueError, SyntaxError):
                    values[name] = text
    return values


def run_notebook(path: Path) -> tuple[dict, float]:
    """Execute the notebook as the book build does (reference mode, its own folder as the working directory).
    Returns (what it glued, the notebook's wall-clock seconds)."""
    from nbclient import NotebookClient

    os.environ["COURSE_SOLUTIONS"] = "1"
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=1800, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    return glued(nb), time.perf_counter() - start
