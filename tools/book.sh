#!/usr/bin/env bash
# Build the executed book into _build/html: every chapter notebook runs with the reference solutions, in the
# profile of this machine (`cpu` without a GPU, `gpu` with CUDA; set COURSE_PROFILE to choose). A cell error fails
# the build. Creates or reuses the virtual environment .venv (or $VENV).
#
# - Figures: the kernels use matplotlib's inline backend (an inherited MPLBACKEND=Agg would leave every figure out).
# - Rebuilds are incremental: jupyter-cache re-executes only the notebooks whose code changed; an edit under
#   course/ or solutions/ (or another profile) changes a stamp and re-executes everything.
# - Offline pages: MathJax, and the widget manager that raw ipywidgets outputs need, are fetched once from npm
#   into _build/vendor and served from the book's own _static (nothing is loaded from a CDN).
# - BOOK_OUT=dir builds into dir/_build/html instead (the browser test builds the `ci` profile into
#   _build/ci/_build/html).
#   Extra arguments go to `jupyter-book build`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
. tools/env.sh
python -c "import jupyter_book, myst_nb, jupyter_cache" 2>/dev/null || python -m pip install -q -e ".[book]"

export COURSE_SOLUTIONS=1
export MPLBACKEND=module://matplotlib_inline.backend_inline
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"  # kernels import this checkout's course/
case "${COURSE_PROFILE:-}" in
  ci|cpu|gpu) PROFILE=$COURSE_PROFILE ;;
  *) PROFILE=$(python -c "from course.lab.config import PROFILE; print(PROFILE.name)") ;;  # gpu if CUDA, else cpu
esac
export COURSE_PROFILE=$PROFILE
OUT=${BOOK_OUT:-.}        # jupyter-book writes into $OUT/_build
BUILD=$OUT/_build
BUILD=${BUILD#./}
mkdir -p "$BUILD"

# --- scripts the pages need, from npm (pinned), kept between builds ------------------------------------------------
MATHJAX=mathjax@3.2.2
WIDGETS=@jupyter-widgets/html-manager@1.0.12
REQUIREJS=requirejs@2.3.8
VENDOR=_build/vendor
STATIC=$VENDOR/static
npm_unpack() {  # npm_unpack <spec> <dir>: the package's files in <dir>
  [ -d "$2" ] && return 0
  command -v npm >/dev/null || { echo "book.sh: npm (Node.js) is needed once to fetch $1 into $2" >&2; exit 1; }
  local tmp
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "$1" >/dev/null)
  mkdir -p "$2.part"
  tar xzf "$tmp"/*.tgz -C "$2.part" --strip-components=1
  mv "$2.part" "$2"
  rm -rf "$tmp"
}
if [ "$(cat "$STATIC/.complete" 2>/dev/null)" != "$MATHJAX $WIDGETS $REQUIREJS v2" ]; then
  npm_unpack "$MATHJAX" "$VENDOR/npm/mathjax"
  npm_unpack "$WIDGETS" "$VENDOR/npm/html-manager"
  npm_unpack "$REQUIREJS" "$VENDOR/npm/requirejs"
  rm -rf "$STATIC"
  mkdir -p "$STATIC/mathjax" "$STATIC/widgets"
  cp -r "$VENDOR/npm/mathjax/es5/." "$STATIC/mathjax/"
  # require.js, then where the widget manager's files are: its fonts are fetched relative to that module's path
  { cat "$VENDOR/npm/requirejs/require.js"
    echo ';(function () { var here = document.currentScript && document.currentScript.src.split("?")[0];'
    echo '  if (here) require.config({paths: {"@jupyter-widgets/html-manager/dist": here.replace(/\/[^\/]*$/, "")}});'
    echo '})();'
  } > "$STATIC/widgets/require.js"
  find "$VENDOR/npm/html-manager/dist" -maxdepth 1 -type f \
    \( -name embed-amd.js -o -name '*.woff*' -o -name '*.ttf' -o -name '*.eot' -o -name '*.svg' \) \
    -exec cp {} "$STATIC/widgets/" \;
  echo "$MATHJAX $WIDGETS $REQUIREJS v2" > "$STATIC/.complete"
fi

# --- incremental execution: a stamp of everything the notebooks import or read besides themselves -----------------
CACHE=$BUILD/.jupyter_cache
STAMP=$(
  { echo "profile=$PROFILE"; python -c "import sys, importlib.metadata as m; print(sys.version, m.version('torch'))";
    find course solutions -name '*.py' -type f | LC_ALL=C sort | xargs sha256sum
    find results -maxdepth 1 -name '*.json' -type f 2>/dev/null | LC_ALL=C sort | xargs -r sha256sum; } \
  | sha256sum | cut -c1-16)  # the studies' records too: the chapters read them
ARGS=()
if [ "$(cat "$CACHE.stamp" 2>/dev/null)" != "$STAMP" ]; then
  [ -d "$CACHE" ] && echo "course/, solutions/ or the profile changed: every notebook runs again"
  rm -rf "$CACHE"
  ARGS+=(--all)  # Sphinx would otherwise keep the pages of unchanged notebooks, with their old outputs
fi

[ "$OUT" != "." ] && ARGS+=(--path-output "$OUT")
start=$(date +%s)
# BOOK_JOBS=N runs up to N outdated notebooks at once into the cache before the build, which then only renders
# (with OMP_NUM_THREADS=1 on a few cores: faster; the seconds the notebooks print then include the sharing).
if [ "${BOOK_JOBS:-1}" -gt 1 ]; then
  python - "$CACHE" "$BOOK_JOBS" <<'EOF'
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
from jupyter_cache import get_cache
from jupyter_cache.base import CacheBundleIn
from jupyter_cache.executors.utils import single_nb_execution

cache, jobs = get_cache(sys.argv[1]), int(sys.argv[2])
timeout = int(re.search(r"timeout:\s*(\d+)", Path("_config.yml").read_text()).group(1))
entries = re.findall(r"(?:root|file):\s*(\S+)", Path("_toc.yml").read_text())
todo = []
for path in [Path(f"{e}.ipynb").resolve() for e in entries if Path(f"{e}.ipynb").exists()]:
    nb = nbformat.read(path, as_version=4)
    try:
        cache.match_cache_notebook(nb)
    except KeyError:
        todo.append((path, nb))


def run(item):  # each notebook runs in its own kernel process; the thread only waits for it
    path, nb = item
    return path, nb, single_nb_execution(nb, cwd=str(path.parent), timeout=timeout, allow_errors=False,
                                         meta_override=True)


print(f"running {len(todo)} notebook(s), {jobs} at a time")
with ThreadPoolExecutor(max(1, min(jobs, len(todo)))) as pool:
    for path, nb, result in pool.map(run, todo):
        if result.err is None:
            cache.cache_notebook_bundle(CacheBundleIn(nb, str(path), data={"execution_seconds": result.time}),
                                        check_validity=False, overwrite=True)
            print(f"  ran {path.name}: {result.time:.0f} s")
        else:  # the build runs it again and reports the error with its traceback
            print(f"  {path.name} failed ({type(result.err).__name__})")
EOF
fi
jupyter-book build . -W -n --keep-going "${ARGS[@]}" "$@"
echo "$STAMP" > "$CACHE.stamp"
# Sphinx copies html_static_path only when it writes pages (and keeps stale copies): bring the scripts up to date
cp -r "$STATIC/." "$BUILD/html/_static/"
# The widget manager's CSS asks for its fonts relative to the module path require.js has at that moment; when the
# path is set after the CSS loads (a race), they are asked for beside the page: serve a copy there too.
mkdir -p "$BUILD/html/book/@jupyter-widgets"
find "$STATIC/widgets" -maxdepth 1 -type f \( -name '*.woff*' -o -name '*.ttf' -o -name '*.eot' -o -name '*.svg' \) \
  -exec cp {} "$BUILD/html/book/@jupyter-widgets/" \;
# how long each chapter ran (from the cache: a chapter reused from it shows the time of the run that made it)
python - "$CACHE" <<'EOF' || true
import re
import sys
from pathlib import Path

import nbformat
from jupyter_cache import get_cache

cache = get_cache(sys.argv[1])
for entry in re.findall(r"(?:root|file):\s*(\S+)", Path("_toc.yml").read_text()):
    path = Path(f"{entry}.ipynb")
    if path.exists():
        record = cache.match_cache_notebook(nbformat.read(path, as_version=4))
        print(f"  {path.name}: ran in {(record.data or {}).get('execution_seconds', float('nan')):.0f} s")
EOF
echo "built in $(( $(date +%s) - start )) s; the book is in $BUILD/html/index.html"
