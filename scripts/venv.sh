#!/usr/bin/env bash
# Ensures this clone's virtual environment exists and prints its path (`<clone>/.venv`).
#
# Two layers:
#   1. the heavy packages (requirements.lock: torch, LeRobot, ...) live in a venv cached outside the clone,
#      keyed by the lock file's hash, so a second clone or a CI run on the same machine reuses it; a
#      missing or broken cache is simply rebuilt. Nothing clone-specific is ever written into it.
#   2. `<clone>/.venv` is a small per-clone venv (same base interpreter, no pip, ~0.5 MB) whose
#      site-packages holds one .pth: this clone's root first, then the cached venv's site-packages. Its
#      bin/ has python, activate, `pirl`, LeRobot's `lerobot-*` tools, pytest, ruff, ... all running this
#      clone's code, and the `lerobot_policy_pirl` plugin distribution (plugins/lerobot_policy_pirl/) is
#      registered there so stock LeRobot tools load pirl policies. Two clones never see each other's code.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCK="$ROOT/requirements.lock"
CACHE_ROOT="${PIRL_VENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pirl/venvs}"
LAYER="$ROOT/.venv"
PLUGIN_DIR="$ROOT/plugins/lerobot_policy_pirl"
LAYER_FORMAT=1 # bump when the layer's layout changes: every clone's layer is then rebuilt once

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

# Set-ups of several clones (or `make check` beside `make demo`) may start at once: whoever builds holds
# a lock (flock where the OS has it); the others wait and then find it built.
lock() {
  if [ -z "${LOCKED:-}" ] && command -v flock >/dev/null 2>&1; then
    mkdir -p "$CACHE_ROOT"
    exec 9>"$CACHE_ROOT/.lock"
    flock 9
    LOCKED=1
  fi
}

cache_info() { # prints the cache's site-packages and base interpreter; fails when the cache is unusable
  [ -x "$VENV/bin/python" ] && [ -f "$VENV/.pirl-complete" ] &&
    "$VENV/bin/python" -c 'import sys, sysconfig; print(sysconfig.get_paths()["purelib"]); print(sys._base_executable)' 2>/dev/null
}

# ---- 1. the shared, cached venv (heavy; built once per lock file) ----------------------------------------
if ! INFO="$(cache_info)"; then
  lock
fi
if ! INFO="$(cache_info)"; then
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
  INFO="$(cache_info)"
fi
CACHE_SITE="${INFO%%$'\n'*}"
BASE_PY="${INFO#*$'\n'}"
# Earlier set-ups pointed the shared venv at whichever clone ran last; that file hijacked other clones.
rm -f "$CACHE_SITE/_pirl_clone.pth"

# ---- 2. this clone's layer (cheap; rebuilt when the cache, the interpreter or the clone's path changes) ---
PLUGIN_VERSION="$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$PLUGIN_DIR/pyproject.toml" | head -n1)"
STAMP="$(printf 'format=%s\ncache=%s\nbase=%s\nroot=%s\nplugin=%s' "$LAYER_FORMAT" "$VENV" "$BASE_PY" "$ROOT" "$PLUGIN_VERSION")"

layer_ok() {
  [ -d "$LAYER" ] && [ ! -L "$LAYER" ] && [ -x "$LAYER/bin/python" ] && [ -f "$LAYER/.pirl-layer" ] &&
    [ "$(cat "$LAYER/.pirl-layer")" = "$STAMP" ]
}

if ! layer_ok; then
  lock
fi
if ! layer_ok; then
  # Before this layer existed `.venv` was a symlink to the cache: remove the link, never what it points to.
  # A venv that is not a pirl layer (made by hand) is moved aside, not deleted.
  if [ -L "$LAYER" ]; then
    rm -f "$LAYER"
  elif [ -e "$LAYER" ] && ! ls "$LAYER"/lib/python*/site-packages/_pirl.pth >/dev/null 2>&1; then
    echo "pirl: $LAYER is not pirl's; moved to $LAYER.old-$$" >&2
    mv "$LAYER" "$LAYER.old-$$"
  else
    rm -rf "$LAYER"
  fi
  "$BASE_PY" -m venv --without-pip "$LAYER"
  SITE="$("$LAYER/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  # site.addsitedir also runs the cached venv's own .pth files (setuptools, cmeel).
  {
    echo "$ROOT"
    echo "$PLUGIN_DIR"
    echo "import site; site.addsitedir('$CACHE_SITE')"
  } >"$SITE/_pirl.pth"
  # The plugin as an installed distribution: LeRobot's register_third_party_plugins() imports every
  # distribution named lerobot_policy_* (the package itself is importable from $PLUGIN_DIR above).
  DIST="$SITE/lerobot_policy_pirl-$PLUGIN_VERSION.dist-info"
  mkdir -p "$DIST"
  printf 'Metadata-Version: 2.1\nName: lerobot_policy_pirl\nVersion: %s\nSummary: %s\n' \
    "$PLUGIN_VERSION" "Registers pirl's LeRobot policy types pirl_flow and pirl_vla (clone $ROOT)" >"$DIST/METADATA"
  echo "pirl-venv.sh" >"$DIST/INSTALLER"
  printf 'lerobot_policy_pirl-%s.dist-info/METADATA,,\n' "$PLUGIN_VERSION" >"$DIST/RECORD"
  # Every command of the cached venv, run by this layer's python: Python scripts get their shebang
  # rewritten, native programs (ruff, cmake, ...) are linked.
  for f in "$VENV"/bin/*; do
    name="${f##*/}"
    case "$name" in
      python | python3 | python3.* | activate | activate.* | Activate.ps1 | pirl) continue ;;
    esac
    [ -f "$f" ] || continue
    first=""
    IFS= read -r first <"$f" 2>/dev/null || true
    case "$first" in
      '#!'*/python*)
        { echo "#!$LAYER/bin/python"; tail -n +2 "$f"; } >"$LAYER/bin/$name"
        chmod +x "$LAYER/bin/$name"
        ;;
      *) ln -sfn "$f" "$LAYER/bin/$name" ;;
    esac
  done
  cat >"$LAYER/bin/pirl" <<PYEOF
#!$LAYER/bin/python
import sys

from app.cli import main

sys.exit(main())
PYEOF
  chmod +x "$LAYER/bin/pirl"
  echo "$STAMP" >"$LAYER/.pirl-layer" # what it was built from (cache= is the heavy venv); last: an interrupted build is redone next time
fi
echo "$LAYER"
