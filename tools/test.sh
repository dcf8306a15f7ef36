#!/usr/bin/env bash
# The whole test suite: unit tests, every exercise check, every chapter notebook under nbval (reference mode, `ci`
# profile), and the built book in a headless browser (tests/test_browser.py builds the `ci`-profile book into
# _build/ci). Creates or reuses the virtual environment .venv (or $VENV). As root (CI), installs Debian's chromium
# and chromium-driver when they are missing, so that the browser test really runs instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/env.sh
python -m pip install -q -e ".[test]"
if ! { command -v chromium >/dev/null && command -v chromedriver >/dev/null; } && [ "$(id -u)" = 0 ] \
    && command -v apt-get >/dev/null; then
  echo "installing chromium and chromium-driver for the browser test"
  { DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver \
    || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; }; } \
    >/dev/null || echo "could not install chromium: tests/test_browser.py will skip its browser checks"
fi
ruff check .  # the code style (pyproject.toml), before the slow part
export COURSE_SOLUTIONS=1 COURSE_PROFILE=ci
# No MPLBACKEND: the kernels then draw with the inline backend (as in the book, so a figure that fails to render
# fails here too), and plain Python picks Agg by itself on a machine without a display.
unset MPLBACKEND
# Two workers, one thread each: small models on a busy CPU are far faster without thread contention.
# nbval needs --dist loadfile, or a notebook's cells get split across workers.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
python -m pytest -n "${WORKERS:-2}" --dist loadfile --nbval-lax tests book/*.ipynb "$@"
