#!/usr/bin/env bash
# Create .venv (Python >= 3.11) and install medview with the exact pins of constraints.txt.
set -euo pipefail
VENV=${VENV:-.venv}
EXTRAS=${EXTRAS:-dev}
pick_python() {
  for cand in python3.11 python3.12 python3.13 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
      echo "$cand"; return 0
    fi
  done
  return 1
}
if [ ! -x "$VENV/bin/python" ]; then
  PY=$(pick_python) || { echo "medview: Python 3.11 or newer is required" >&2; exit 1; }
  echo "medview: creating $VENV with $($PY --version)"
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade "pip>=24" 
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[${EXTRAS}]"
# PyRadiomics 3.0.1 (the analysis extra's feature engine) ships only an sdist whose build imports numpy:
# build it against the venv's pinned numpy without build isolation.
case ",${EXTRAS}," in
  *,analysis,*)
    if ! "$VENV/bin/python" -c "import radiomics" >/dev/null 2>&1; then
      echo "medview: building pyradiomics (no build isolation, against the pinned numpy)"
      "$VENV/bin/python" -m pip install -q --disable-pip-version-check "setuptools>=70" wheel
      "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-build-isolation -c constraints.txt "pyradiomics==3.0.1"
    fi ;;
esac
