"""Run a chapter notebook end to end in a fresh kernel (reference mode) and read back what it measured."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def run_notebook(path: Path, report: str) -> tuple[dict, float]:
    """Execute the notebook, then `report` (code that prints "BENCH" + a JSON object) in the same kernel.
    Returns (that object, the notebook's wall-clock seconds)."""
    os.environ["COURSE_SOLUTIONS"] = "1"
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(report))
    start = time.perf_counter()
    NotebookClient(nb, timeout=1800, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    seconds = time.perf_counter() - start
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    return json.loads(text.split("BENCH", 1)[1]), seconds
