#!/usr/bin/env bash
# The README's first command: set up (if needed) and run the simulated SO-101 PI-RL demo.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$("$ROOT/scripts/venv.sh")"
cd "$ROOT"
# $VENV is this clone's .venv layer: its python imports this clone's code (learner/actor subprocesses
# included) and the shared cached packages, whatever the working directory.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MUJOCO_GL="${MUJOCO_GL:-egl}" PYTHONUNBUFFERED=1
exec "$VENV/bin/python" -m app demo "$@"
