"""environment.yml (conda) and pyproject.toml (pip) must ask for the same packages and versions."""
import re
import tomllib

from course.grader.exercises import ROOT

CONDA_NAMES = {"torch": "pytorch"}  # pip name -> conda name where they differ


def _split(requirement: str):
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", requirement)
    return m.group(1).lower(), m.group(2).replace(" ", "")


def test_environment_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip = dict(_split(r) for r in project["dependencies"])
    for extra in project["optional-dependencies"].values():
        pip.update(_split(r) for r in extra)
    conda = {}
    text = (ROOT / "environment.yml").read_text()
    for line in text[text.index("dependencies:"):].splitlines():
        m = re.match(r"^  - ([A-Za-z0-9_.\-]+)(.*)$", line)
        if m and m.group(1) not in ("python", "pip"):
            conda[m.group(1).lower()] = m.group(2).replace(" ", "")
    expected = {CONDA_NAMES.get(name, name): spec for name, spec in pip.items()}
    assert conda == expected
