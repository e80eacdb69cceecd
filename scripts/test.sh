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
# 0 runs in this one process (what a debugger or `-s` wants). Tests stealing work from each other's queues
# (worksteal) keep both cores busy to the end.
WORKERS="${PIRL_TEST_WORKERS:-$(nproc 2>/dev/null || echo 1)}"
[ "$WORKERS" -gt 4 ] && WORKERS=4
XDIST=()
[ "$WORKERS" -gt 1 ] && XDIST=(-n "$WORKERS" --dist worksteal)
echo "== pytest (${WORKERS} worker(s))"
set +e
"$VENV/bin/python" -m pytest --timeout="${PIRL_TEST_TIMEOUT:-600}" "${XDIST[@]}" "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pirl: pytest collected no tests; refusing to pass an empty run" >&2
  exit 1
fi
exit "$rc"
