# Sourced by tools/test.sh and tools/book.sh: create or reuse the virtual environment and make sure PyTorch is in
# it. TORCH_SPEC picks the PyTorch to install when none is there (default: the version the course is tested with).
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -c 'import sys; assert sys.version_info >= (3, 10), "Python 3.10 or newer is needed"'
  python3 -m venv "$VENV"
fi
. "$VENV/bin/activate"
if ! python -c "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is None)" 2>/dev/null; then
  python -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
fi
