"""What the benchmarks hand on: the values a notebook glued, as myst-nb stores them in an executed notebook, and the
GPU benchmark's record as chapter 7 shows it."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from bench_chapter import headline  # noqa: E402
from notebook_runner import glued  # noqa: E402

from course.lab.show import gpu_figures  # noqa: E402


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


ROOT = Path(__file__).resolve().parent.parent


def test_the_gpu_benchmarks_record_is_what_chapter_7_shows(tmp_path):
    """`bench_gpu.py --json` (its smoke test here, on the CPU) writes figures with their provenance, and chapter 7's
    table shows every configuration it timed; a run cut short says so; without a record, the figures measured
    elsewhere are shown, named as such."""
    out = tmp_path / "results" / "gpu.json"
    env = {**os.environ, "COURSE_SOLUTIONS": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py"), "--smoke", "--no-notebooks",
                           "--json", str(out)], capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    record = json.loads(out.read_text())
    assert record["complete"] is True and record["torch"] and record["date"] and "--smoke" in record["command"]
    assert [r["config"] for r in record["rows"]] == ["recipe, not compiled", "loop, eager"]
    assert record["small_model"][0]["model"] == "SmallUNet" and record["small_model"][0]["steps_s"] > 0

    elsewhere = ROOT / "book" / "data" / "gpu_measured_elsewhere.json"
    table = gpu_figures(out, elsewhere)
    assert table.startswith("**Measured by this course's benchmark**") and "cut short" not in table
    assert "| tiny DiT | recipe, not compiled | " in table and "| tiny DiT | loop, eager | " in table
    assert "| SmallUNet | loop, eager | " in table and "steps/s" in table
    assert "| × the first |" in table and " | 1.00 | " in table  # each model against its first row

    eager = record["small_model"][0]
    graphs = {**eager, "config": "loop, compile='cudagraphs'", "img_s": 4 * eager["img_s"], "warmup_s": 2.5,
              "pays_after_steps": 149.2}
    out.write_text(json.dumps({**record, "small_model": [eager, graphs]}))
    table = gpu_figures(out, elsewhere)
    assert "| SmallUNet | loop, compile='cudagraphs' | " in table and " | 4.00 | " in table
    assert "\"loop, compile='cudagraphs'\" pays for runs of ≥ 149 steps" in table
    out.write_text(json.dumps({**record, "small_model": [{**eager, "img_s": 0.0}, graphs]}))
    row = next(line for line in gpu_figures(out, elsewhere).splitlines() if "compile='cudagraphs'" in line)
    assert row.split(" | ")[3] == "—", "no ratio to a first row of 0 img/s"

    out.write_text(json.dumps({**record, "complete": False, "small_model": [],
                               "rows": [record["rows"][0], {"model": "tiny DiT", "config": "loop, eager",
                                                            "error": "RuntimeError: out of memory"}]}))
    table = gpu_figures(out, elsewhere)
    assert "cut short" in table and "did not run: RuntimeError: out of memory" in table and "SmallUNet" not in table

    out.write_text('{"rows": [')  # a broken file (an interrupted copy, say) is named, and the other figures shown
    table = gpu_figures(out, elsewhere)
    assert table.startswith(f"{out} could not be read (JSONDecodeError") and "Measured elsewhere" in table

    table = gpu_figures(tmp_path / "none.json", elsewhere)
    assert table.startswith("**Measured elsewhere, not by this course's benchmark**")
    assert "| NVIDIA H200 (2026-11-26, 2.11) | official DiT models.py | DiT-B/2, 256 |" in table


def test_bench_latent_defaults_are_chapter_6s_headline():
    """`bench_latent.py` with no options is chapter 6's headline run (the chapter cites it as such): its steps,
    samples per class and model size are the notebook's, in the cpu profile."""
    from bench_latent import parser

    nb = nbformat.read(Path(__file__).resolve().parent.parent / "book" / "06_latent.ipynb", as_version=4)
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")

    def cpu_pick(name):
        found = re.search(rf"^{name} = PROFILE\.pick\([^)]*\bcpu=(\d+)", source, re.M)
        assert found, f"chapter 6 no longer sets {name} with PROFILE.pick"
        return int(found.group(1))

    model = re.search(r"latent_dit = DiT\((.*?)\)\s", source, re.S)
    assert model, "chapter 6's headline model is no longer built as `latent_dit = DiT(...)`"
    sizes = dict(re.findall(r"(hidden_size|depth|num_heads|patch_size)=(\d+)", model.group(1)))
    defaults = parser().parse_args([])
    assert (defaults.steps, defaults.per_class) == (cpu_pick("HEAD_STEPS"), cpu_pick("N_EVAL"))
    assert (defaults.hidden, defaults.depth, defaults.heads, defaults.patch) == tuple(
        int(sizes[k]) for k in ("hidden_size", "depth", "num_heads", "patch_size"))
