#!/usr/bin/env bash
# Ensures a Python >= 3.12 virtual environment with the locked packages exists and prints its path.
# The venv lives outside the clone (cache keyed by the lock file's hash) so CI runs on the same machine
# reuse it; a missing or broken cache is simply rebuilt. `.venv` in the clone links to it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCK="$ROOT/requirements.lock"
CACHE_ROOT="${PIRL_VENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pirl/venvs}"

find_python() {
  local cand
  for cand in "${PIRL_PYTHON:-}" python3.12 python3.13 python3.14 python3; do
    [ -n "$cand" ] || continue
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys, venv; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then
      command -v "$cand"; return 0
    fi
  done
  if command -v pyenv >/dev/null 2>&1 || [ -d "${PYENV_ROOT:-$HOME/.pyenv}/versions" ]; then
    for cand in $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[2-9]* 2>/dev/null | sort -V); do
      if [ -x "$cand/bin/python3" ] && "$cand/bin/python3" -c 'import venv' 2>/dev/null; then
        echo "$cand/bin/python3"; return 0
      fi
    done
  fi
  return 1
}

HASH="$( (cat "$LOCK"; echo "${PIRL_VENV_SALT:-v1}") | sha256sum | cut -c1-16)"
VENV="$CACHE_ROOT/$HASH"

if [ ! -x "$VENV/bin/python" ] || [ ! -f "$VENV/.pirl-complete" ]; then
  PY="$(find_python)" || {
    echo "pirl: no Python >= 3.12 found. Install one (e.g. 'pyenv install 3.12', or your distribution's python3.12 with the venv module) or set PIRL_PYTHON=/path/to/python3.12." >&2
    exit 2
  }
  echo "pirl: creating virtual environment $VENV with $PY (first run: several minutes, ~7 GB)" >&2
  rm -rf "$VENV.tmp"
  mkdir -p "$CACHE_ROOT"
  "$PY" -m venv "$VENV.tmp"
  "$VENV.tmp/bin/python" -m pip install -q --upgrade pip >&2
  # The lock pins torch below the machine-wide cap some images ship; the lock itself is authoritative.
  PIP_CONSTRAINT= "$VENV.tmp/bin/python" -m pip install -q --no-deps -r "$LOCK" >&2
  rm -rf "$VENV"
  mv "$VENV.tmp" "$VENV"
  # venv scripts embed the venv path in their shebang: rewrite them for the final location.
  grep -lr --null "$VENV.tmp" "$VENV/bin" 2>/dev/null | xargs -0 -r sed -i "s#$VENV.tmp#$VENV#g"
  touch "$VENV/.pirl-complete"
fi

# Point the venv at this clone (cheap; the cached venv may be shared by several clones).
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$ROOT" > "$SITE/_pirl_clone.pth"
cat > "$VENV/bin/pirl" <<PYEOF
#!$VENV/bin/python
import sys
from app.cli import main
sys.exit(main())
PYEOF
chmod +x "$VENV/bin/pirl"
ln -sfn "$VENV" "$ROOT/.venv"
echo "$VENV"
