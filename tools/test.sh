#!/usr/bin/env bash
# The whole test suite: unit tests, every exercise check, and every chapter notebook under nbval
# (reference mode, `ci` profile). Creates or reuses the virtual environment .venv (or $VENV).
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/env.sh
python -m pip install -q -e ".[test]"
export COURSE_SOLUTIONS=1 COURSE_PROFILE=ci MPLBACKEND=Agg
# Two workers, one thread each: small models on a busy CPU are far faster without thread contention.
# nbval needs --dist loadfile, or a notebook's cells get split across workers.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
python -m pytest -n "${WORKERS:-2}" --dist loadfile --nbval-lax tests book/*.ipynb "$@"
