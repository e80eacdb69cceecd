#!/usr/bin/env bash
# The README's first command: set up (if needed) and run the simulated SO-101 PI-RL demo.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$("$ROOT/scripts/venv.sh")"
cd "$ROOT"
# The cached venv may serve several clones and its .pth names the last one set up; this clone comes first
# for every process started from here (learner/actor subprocesses included).
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MUJOCO_GL="${MUJOCO_GL:-egl}" PYTHONUNBUFFERED=1
exec "$VENV/bin/python" -m app demo "$@"
