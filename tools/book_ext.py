"""The book's own Sphinx extension (loaded from _config.yml): pages that work offline and without errors.

- Launch buttons (Colab, Binder) only when `repository.url` is set in _config.yml: sphinx-book-theme fails on
  launch buttons without a repository, so the buttons under `launch_buttons` are dropped while it is empty.
- No thebe: the views are precomputed (course/lab/widgets.py), so sphinx-thebe's scripts (which name a CDN, and are
  added twice on a rebuild: "Identifier 'THEBE_JS_URL' has already been declared") are left out of the pages
  unless `launch_buttons.thebe` is true.
- A colour mode: with none, pydata-sphinx-theme logs "Got invalid theme mode" to the console. Light, because the
  notebooks' figures are drawn on white.
- The course's own styles, tools/static/course.css: glued values in the weight of the prose around them (myst-nb
  sets them in bold, and the course glues whole sentences).
"""
from pathlib import Path

STATIC = Path(__file__).resolve().parent / "static"


def _configure(app, config):
    config.html_static_path = [*config.html_static_path, str(STATIC)]
    options = dict(config.html_theme_options or {})
    if not str(options.get("repository_url") or "").strip():
        options.pop("launch_buttons", None)
    config.html_theme_options = options


def _thebe_wanted(app) -> bool:
    return bool((app.config.html_theme_options.get("launch_buttons") or {}).get("thebe"))


def _page(app, pagename, templatename, context, doctree):
    context["default_mode"] = context.get("default_mode") or "light"
    if _thebe_wanted(app) or "script_files" not in context:
        return
    context["script_files"] = [
        js for js in context["script_files"]
        if "sphinx-thebe" not in str(js) and "THEBE_JS_URL" not in str(getattr(js, "attributes", {}).get("body", ""))
    ]


def setup(app):
    app.connect("config-inited", _configure, priority=100)
    app.connect("html-page-context", _page, priority=900)
    app.add_css_file("course.css")
    return {"parallel_read_safe": True, "parallel_write_safe": True}
