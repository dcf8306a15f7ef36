"""The built book as a reader meets it, in the `ci` profile.

One session-scoped build (`tools/book.sh` with BOOK_OUT=_build/ci; jupyter-cache makes a rebuild of unchanged
notebooks take seconds) serves two kinds of tests:
- without a browser: every plotting cell of every chapter left its figure in the executed notebook and in the page
  (an inherited MPLBACKEND=Agg once left the whole book without a figure);
- in headless Chromium with the network off (every host name resolves to nothing; the pages are served from
  127.0.0.1): no console error on any page, every image rendered, the math typeset by the book's own MathJax, and
  every interactive view (course/lab/widgets.py) shows another frame when its slider moves. Screenshots of each page
  and of each view before and after go to _build/screenshots/.

The browser part skips when chromium, chromedriver or selenium is missing; tools/test.sh and .ci/run install them.
"""
from __future__ import annotations

import ast
import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from html.parser import HTMLParser
from pathlib import Path

import pytest

from course.grader.exercises import ROOT

BOOK_OUT = ROOT / "_build" / "ci"
HTML = BOOK_OUT / "_build" / "html"
SCREENSHOTS = ROOT / "_build" / "screenshots"
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))
# a cell that draws a figure (raw ipywidgets cells draw into a widget, not into the page)
PLOTTING = re.compile(r"plt\.(subplots|figure|show|plot|imshow|tight_layout|suptitle)|\b(show_grid|class_grid|"
                      r"plot_losses)\(|\.imshow\(")


def _source(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _run_at_top_level(source: str) -> str:
    """The cell's code without its function and class definitions (a cell that only defines a plotting helper
    draws nothing)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source
    tree.body = [n for n in tree.body if not isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    return ast.unparse(tree)


def plotting_cells(path: Path) -> list[int]:
    cells = json.loads(path.read_text())["cells"]
    return [i for i, c in enumerate(cells) if c["cell_type"] == "code"
            and PLOTTING.search(_run_at_top_level(_source(c))) and "ipywidgets" not in _source(c)]


@pytest.fixture(scope="session")
def built_book() -> Path:
    """Build (or bring up to date) the book in the `ci` profile; returns the folder of its HTML.
    COURSE_BOOK_REUSE=1 takes the last build as it is (to iterate on the tests)."""
    if os.environ.get("COURSE_BOOK_REUSE") == "1" and (HTML / "index.html").exists():
        return HTML
    env = dict(os.environ, COURSE_PROFILE="ci", COURSE_SOLUTIONS="1", BOOK_OUT=str(BOOK_OUT.relative_to(ROOT)))
    if sys.prefix != sys.base_prefix:  # build with the virtual environment the tests run in
        env["VENV"] = sys.prefix
    env.setdefault("BOOK_JOBS", "3")  # the outdated chapters run side by side (their seconds do not matter here)
    env.pop("MPLBACKEND", None)
    log = ROOT / "_build" / "ci-book.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        done = subprocess.run(["bash", "tools/book.sh"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                              timeout=2400)
    if done.returncode != 0:
        pytest.fail(f"tools/book.sh failed (rc {done.returncode}); the end of {log}:\n"
                    + "\n".join(log.read_text().splitlines()[-40:]))
    return HTML


# ---------------------------------------------------------------------------------------------------------------
# Without a browser
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_plotting_cell_has_its_figure_in_the_page(built_book, path):
    import nbformat
    from jupyter_cache import get_cache

    _, executed = get_cache(str(BOOK_OUT / "_build" / ".jupyter_cache")).merge_match_into_notebook(
        nbformat.read(path, as_version=4))
    cells = executed["cells"]
    expected = plotting_cells(path)
    missing = [i for i in expected
               if not any("image/png" in o.get("data", {}) or "image/svg+xml" in o.get("data", {})
                          for o in cells[i].get("outputs", []))]
    assert not missing, (f"cells {missing} of {path.name} draw a figure but the executed notebook holds none "
                         "(is MPLBACKEND=Agg inherited by the kernel?)")
    page = (built_book / "book" / f"{path.stem}.html").read_text()
    figures = len(re.findall(r"<img\b", page)) - len(re.findall(r'class="course-view-frame"', page))
    assert figures >= len(expected), f"{path.stem}.html shows {figures} figures for {len(expected)} plotting cells"


HEADLINE = {  # shared/SYLLABUS.md: the headline numbers every chapter 2-7 glues (accuracies as fractions, seconds)
    **{ch: ("headline_acc_w1", "headline_acc_w2", "headline_fd", "headline_fd_floor", "headline_train_seconds")
       for ch in ("02_dit", "03_uvit", "05_diffit", "06_latent")},
    "04_genvit": ("headline_classifier_acc", "headline_min_class_share", "headline_fd", "headline_fd_floor",
                  "headline_train_seconds"),
    "07_summary": ("headline_min_acc_w1",),
}


@pytest.mark.parametrize("chapter", sorted(HEADLINE))
def test_every_chapter_glues_its_headline_numbers(built_book, chapter):
    """A machine can read each chapter's headline run: `profile` and the numbers under their fixed names, as
    numbers (fractions in [0, 1] for accuracies and shares, seconds ≥ 0)."""
    import nbformat
    from jupyter_cache import get_cache

    _, executed = get_cache(str(BOOK_OUT / "_build" / ".jupyter_cache")).merge_match_into_notebook(
        nbformat.read(ROOT / "book" / f"{chapter}.ipynb", as_version=4))
    glued = {}
    for cell in executed["cells"]:
        for out in cell.get("outputs", []):
            name = out.get("metadata", {}).get("scrapbook", {}).get("name")
            if name:  # myst-nb stores a glued value under its mime prefix: application/papermill.record/text/plain
                glued[name] = next((v for k, v in out.get("data", {}).items() if k.endswith("text/plain")), None)
    missing = [n for n in ("profile", *HEADLINE[chapter]) if n not in glued]
    assert not missing, f"{chapter} does not glue {missing}"
    assert glued["profile"].strip("'\"") == "ci"
    for name in HEADLINE[chapter]:
        value = float(glued[name])
        assert value >= 0, (name, value)
        if "acc" in name or "share" in name:
            assert value <= 1, f"{chapter}: {name} = {value} should be a fraction"


def test_glued_sentences_take_the_weight_of_the_prose(built_book):
    """myst-nb sets glued values in bold; the course glues whole verdicts, so its own stylesheet (tools/static,
    added by tools/book_ext.py) sets them in the weight of the prose around them, on every page."""
    css = (built_book / "_static" / "course.css").read_text()
    assert re.search(r"span\.pasted-text\s*\{[^}]*font-weight:\s*inherit", css)
    for path in NOTEBOOKS:
        assert "_static/course.css" in (built_book / "book" / f"{path.stem}.html").read_text(), path.stem


class _PageText(HTMLParser):
    """The text a reader of a built page reads, in two parts: the article's prose, and the cells' outputs (without the
    code of the cells, `cell_input`, or of the exercise views, `course-exercise`; no scripts or styles)."""
    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
    SKIP_CLASSES = {"cell_input", "course-exercise"}
    BLOCK = {"p", "div", "li", "dd", "dt", "td", "th", "tr", "pre", "section", "article", "h1", "h2", "h3", "h4",
             "h5", "h6", "blockquote", "table", "ul", "ol", "details", "summary", "figure", "figcaption"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[bool, bool]] = []  # per open element: (its text is skipped, it is in a cell's output)
        self.inside_article = 0
        self.prose: list[str] = []
        self.outputs: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in self.VOID:
            return
        classes = set((dict(attrs).get("class") or "").split())
        skipped, output = self.stack[-1] if self.stack else (False, False)
        skipped = skipped or tag in ("script", "style") or bool(classes & self.SKIP_CLASSES)
        self.stack.append((skipped, output or "cell_output" in classes))
        self.inside_article += tag == "article"

    def handle_endtag(self, tag):
        if tag in self.VOID or not self.stack:
            return
        _, output = self.stack.pop()
        self.inside_article -= tag == "article"
        if tag in self.BLOCK:  # inline elements (a glued value's span) join the words around them
            (self.outputs if output else self.prose).append(" ")

    def handle_data(self, data):
        skipped, output = self.stack[-1] if self.stack else (False, False)
        if self.inside_article and not skipped:
            (self.outputs if output else self.prose).append(data)


def _sentences(text: str, min_chars: int) -> list[str]:
    """Sentences, and the clauses after a colon ("Seed by seed: <verdict>"), of at least `min_chars` characters."""
    return list(dict.fromkeys(s.strip() for s in re.split(r"(?<=[.!?:])\s+", text) if len(s.strip()) >= min_chars))


def repeated_sentences(page: str, min_chars: int = 60) -> list[str]:
    """Sentences of at least `min_chars` characters that a page's prose says twice, or that a cell's output shows and
    the prose says again (a verdict printed under its cell and glued into the prose). Outputs may repeat each other:
    a chapter's closing grade lists the checks' reports again, by design."""
    parser = _PageText()
    parser.feed(page)
    prose, outputs = (re.sub(r"\s+", " ", "".join(parts)) for parts in (parser.prose, parser.outputs))
    return [s for s in _sentences(prose, min_chars) if prose.count(s) > 1] + \
        [s for s in _sentences(outputs, min_chars) if s in prose]


def test_the_repeat_detector_sees_a_verdict_shown_twice_and_spares_code():
    verdict = "U-ViT is ahead of no long skips in every seed on the judge's accuracy of unguided samples."
    page = (f'<html><body><nav><p>{verdict}</p></nav><article><div class="cell_output"><pre>{verdict}</pre></div>'
            f"<p>What the record says: {verdict} That is what the paper reports.</p></article></body></html>")
    assert repeated_sentences(page) == [verdict]
    code = "for w in (1.0, 2.0): e = evaluate(model, diffusion, size=LATENT_SIZE, dataset='shapes', w=w)."
    page = (f'<article><div class="cell_input"><pre>{code}</pre></div><p>{code}</p>'
            f'<div class="course-exercise"><p>{verdict}</p></div><p>{verdict}</p><br><img src="x.png"></article>')
    assert repeated_sentences(page) == []
    report = "✔ dit.modulate (0.01 s) matches the reference on random inputs, forward and backward, three shapes."
    page = f'<article><div class="cell_output">{report}</div><div class="cell_output">{report}</div></article>'
    assert repeated_sentences(page) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_page_says_the_same_sentence_twice(built_book, path):
    page = (built_book / "book" / f"{path.stem}.html").read_text()
    repeated = repeated_sentences(page)
    assert not repeated, (f"{path.stem}.html shows these sentences more than once (a cell's output and the glued "
                          "prose? see course.lab.show.show_verdicts):\n" + "\n".join(repeated))


def test_pages_load_nothing_from_the_network(built_book):
    for page in sorted(built_book.rglob("*.html")):
        if "_static" in page.parts:
            continue
        text = page.read_text()
        remote = re.findall(r"""<(?:script|link)\b[^>]*\b(?:src|href)=["'](https?://[^"']+)""", text)
        assert not remote, f"{page.relative_to(built_book)} loads {remote}"
        if 'url: ""' in (ROOT / "_config.yml").read_text():  # launch buttons only with a repository
            assert "colab.research.google.com" not in text and "mybinder.org" not in text


# ---------------------------------------------------------------------------------------------------------------
# In headless Chromium, offline
# ---------------------------------------------------------------------------------------------------------------
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and DRIVER):
        pytest.skip("no chromium + chromedriver here (Debian: apt-get install chromium chromium-driver; "
                    "tools/test.sh installs them when run as root)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1000", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--disable-background-networking", "--no-first-run", "--disable-extensions"]:
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium-manager must not try to download a driver
    driver = webdriver.Chrome(options=options, service=Service(executable_path=DRIVER))
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def served(built_book):
    """The built book over HTTP on 127.0.0.1 (file:// pages may not load fonts and scripts the same way)."""
    handler = functools.partial(_QuietHandler, directory=str(built_book))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


PAGES = [f"{entry}.html" for entry in re.findall(r"(?:root|file):\s*(\S+)", (ROOT / "_toc.yml").read_text())]

WAIT_FOR_PAGE = """
const done = arguments[arguments.length - 1];
const images = Array.from(document.images).map(img => img.complete ? null :
    new Promise(ok => { img.addEventListener('load', ok); img.addEventListener('error', ok); }));
const math = (window.MathJax && MathJax.startup && MathJax.startup.promise) || Promise.resolve();
Promise.all([math, ...images.filter(Boolean)]).then(() => done(true), e => done(String(e)));
"""

PAGE_STATE = """
const main = document.querySelector('main') || document.body;
const imgs = Array.from(main.querySelectorAll('img'));
const math = Array.from(document.querySelectorAll('.math'));
return {
  images: imgs.length,
  broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => (i.src || '').slice(0, 80)),
  math: math.length,
  typeset: document.querySelectorAll('mjx-container').length,
  raw_math: math.filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.slice(0, 60)),
  mathjax: !!(window.MathJax && MathJax.version),
  views: document.querySelectorAll('.course-view').length,
  height: document.documentElement.scrollHeight,
};
"""


def _console_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser")
            if e["level"] == "SEVERE" and "favicon.ico" not in e["message"]]


def _screenshot(driver, path: Path, height: int) -> None:
    """The whole page at half scale (Chromium's own full-page capture)."""
    import base64

    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": 1280, "height": min(height, 30000), "scale": 0.5}})
    path.write_bytes(base64.b64decode(shot["data"]))


@pytest.mark.parametrize("page", PAGES)
def test_page_in_an_offline_browser(browser, served, page):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.get_log("browser")  # drop what earlier pages left
    browser.get(f"{served}/{page}")
    assert browser.execute_async_script(WAIT_FOR_PAGE) is True
    state = browser.execute_script(PAGE_STATE)
    name = Path(page).stem
    _screenshot(browser, SCREENSHOTS / f"{name}.png", state["height"])

    assert not state["broken"], f"{page}: images that did not render: {state['broken']}"
    if state["math"]:
        assert state["mathjax"], f"{page}: MathJax did not load (from _static/mathjax)"
        assert not state["raw_math"], f"{page}: math left raw: {state['raw_math'][:5]}"
        assert state["typeset"] >= state["math"]
    if page.endswith(tuple(f"{p.stem}.html" for p in NOTEBOOKS)):
        assert state["images"] > 0, f"{page} shows no image at all"

    _move_every_view(browser, page, name)
    errors = _console_errors(browser)
    assert not errors, f"{page}: console errors:\n" + "\n".join(errors)


VIEW_STATE = """
const view = arguments[0];
return [view.dataset.frame || '', (view.querySelector('.course-view-caption') || {}).textContent || '']
  .concat(Array.from(view.querySelectorAll('img')).map(i => i.src))
  .concat(Array.from(view.querySelectorAll('canvas')).map(c => c.toDataURL())).join('|');
"""


def _move_every_view(browser, page: str, name: str, every_control: bool = False) -> int:
    """Move the first control (or every control) of each view with the keyboard; the shown frame must change."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    views = browser.find_elements(By.CSS_SELECTOR, ".course-view")
    for k, view in enumerate(views):
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", view)
        view.screenshot(str(SCREENSHOTS / f"{name}-view{k}-start.png"))
        controls = view.find_elements(By.CSS_SELECTOR, "input.course-view-control")
        assert controls, f"{page}: view {k} has no control"
        for c, control in enumerate(controls if every_control else controls[:1]):
            if control.get_attribute("max") == "0":
                continue
            before = browser.execute_script(VIEW_STATE, view)
            control.click()
            control.send_keys(Keys.END)  # the keyboard, as a reader would: to the last frame
            after = browser.execute_script(VIEW_STATE, view)
            assert after != before, f"{page}: view {k} did not change when its control {c} moved"
        view.screenshot(str(SCREENSHOTS / f"{name}-view{k}-end.png"))
        for img in view.find_elements(By.CSS_SELECTOR, "img"):
            assert browser.execute_script("return arguments[0].naturalWidth", img) > 0
    return len(views)


@pytest.fixture(scope="module")
def views_page(built_book):
    """A page with one view of each kind (course/lab/widgets.py), beside the book: the chapters need not use all."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from course.lab.widgets import attention_view, grid_view, slider_view

    def figure(a, b):
        fig, ax = plt.subplots(figsize=(3, 2))
        ax.plot([0, 1], [a, b])
        ax.set_title(f"$a = {a}$, $b = {b}$")
        return fig

    g = torch.Generator().manual_seed(0)
    clean = torch.rand(3, 1, 8, 8, generator=g) * 2 - 1
    noisy = {t: clean + 0.1 * t * torch.randn(3, 1, 8, 8, generator=g) for t in (1, 5)}
    maps = {t: torch.softmax(torch.randn(2, 3, 2, 16, 16, generator=g), -1) for t in (1, 5)}
    views = [slider_view([torch.rand(4, 3, 8, 8, generator=g) for _ in range(3)], ["one", "two", "three"]),
             grid_view(figure, {"a": [0, 1], "b": [2, 3, 4]}, title="a grid of figures"),
             attention_view(clean, noisy, maps, patch=2, labels=[3, 1, 4], title="attention")]
    path = built_book / "views.html"
    path.write_text("<!DOCTYPE html><html><head><meta charset='utf-8'><title>views</title></head><body>"
                    + "".join(v._repr_html_() for v in views) + "</body></html>")
    return "views.html"


def test_every_kind_of_view_moves_in_the_browser(browser, served, views_page):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.get_log("browser")
    browser.get(f"{served}/{views_page}")
    assert _move_every_view(browser, views_page, "views", every_control=True) == 3
    errors = _console_errors(browser)
    assert not errors, "console errors:\n" + "\n".join(errors)
