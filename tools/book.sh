#!/usr/bin/env bash
# Build the executed book into _build/html: every chapter notebook runs with the reference solutions, in the
# profile of this machine (`cpu` without a GPU, `gpu` with CUDA; set COURSE_PROFILE to choose). A cell error fails
# the build. Creates or reuses the virtual environment .venv (or $VENV).
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/env.sh
python -m pip install -q -e ".[book]"
export COURSE_SOLUTIONS=1 MPLBACKEND=Agg
rm -rf _build/.jupyter_cache
jupyter-book build . -W -n --keep-going "$@"
echo "The book is in _build/html/index.html"
