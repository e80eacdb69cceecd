#!/usr/bin/env bash
# The README's test command: lint, format check and the offline test suite. Fails when nothing ran.
# scripts/check.sh (`make check`) runs this with -m "not slow": the fast lane.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$("$ROOT/scripts/venv.sh")"
cd "$ROOT"
# $VENV is this clone's .venv layer: its python imports this clone's code (learner/actor subprocesses
# included) and the shared cached packages, whatever the working directory.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 MUJOCO_GL="${MUJOCO_GL:-egl}"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
echo "== ruff check"; "$VENV/bin/ruff" check .
echo "== ruff format --check"; "$VENV/bin/ruff" format --check .
# Parallel workers (pytest-xdist): one per core, at most 4 (each end-to-end test starts a learner and an
# actor process of its own; more workers than that mostly add memory). PIRL_TEST_WORKERS=N overrides;
# 0 or 1 runs everything in this one process (what a debugger or `-s` wants). Tests stealing work from each
# other's queues (worksteal) keep every core busy to the end.
# With workers, two phases (tests/conftest.py, PIRL_TEST_PHASE): every test not marked `timing` on the
# workers, then the `timing` tests (wall-clock bounds on live processes) alone, on a quiet machine.
WORKERS="${PIRL_TEST_WORKERS:-$(nproc 2>/dev/null || echo 1)}"
[ "$WORKERS" -gt 4 ] && WORKERS=4
PYTEST=("$VENV/bin/python" -m pytest --timeout="${PIRL_TEST_TIMEOUT:-600}")
set +e
if [ "$WORKERS" -gt 1 ]; then
  echo "== pytest, parallel phase (${WORKERS} workers)"
  PIRL_TEST_PHASE=parallel "${PYTEST[@]}" -n "$WORKERS" --dist worksteal "$@"
  rc1=$?
  echo "== pytest, timing phase (one process)"
  PIRL_TEST_PHASE=timing "${PYTEST[@]}" "$@"
  rc2=$?
else
  echo "== pytest (one process)"
  "${PYTEST[@]}" "$@"
  rc1=$?
  rc2=5
fi
set -e
# 5 = "no tests collected": fine for one phase (a -k or -m that selects none of its tests), not for both.
if [ "$rc1" -eq 5 ] && [ "$rc2" -eq 5 ]; then
  echo "pirl: pytest collected no tests; refusing to pass an empty run" >&2
  exit 1
fi
for rc in "$rc1" "$rc2"; do
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ]; then
    exit "$rc"
  fi
done
exit 0
