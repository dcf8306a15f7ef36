"""The book's structure: the table of contents, clean notebooks, and a section and a check cell per exercise."""
import json
import re

import pytest

from course.exercises import CHAPTER_OF, ROOT, exercises, modules

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
    assert re.search(r"execute_notebooks:\s*force", config)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_clean_and_starts_with_setup(path):
    code = [c for c in cells(path) if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "clear the outputs"
    assert "setup(" in source(code[0])


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
