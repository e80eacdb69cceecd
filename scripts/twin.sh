#!/usr/bin/env bash
# Train in the randomized twin with one command: one `pirl learner` and N `pirl actor` processes, each actor
# its own simulated SO-101 with its own seed (arm K: --actor.actor_id=armK --robot.seed=K), all on
# configs/sim_twin_reach.json (docs/simulation.md, "Randomized twin").
#
#   scripts/twin.sh [N] [OUTPUT_DIR] [-- extra options for the learner and every actor]
#   scripts/twin.sh 4 outputs/twin -- --learner.max_updates=20
#
# N defaults to 2, OUTPUT_DIR to outputs/sim_twin_reach. Logs: OUTPUT_DIR/logs/{learner,armK}.log; the
# progress lines are also printed here. Ctrl-C (or SIGTERM) stops all of them: the learner gets SIGINT (it
# writes its final checkpoint), the actors SIGTERM; whatever still runs 30 s later is killed. When the
# learner exits by itself (learner.max_updates), the actors are stopped too. PIRL_TWIN_CONFIG picks
# another config, PIRL_TWIN_PORT another port (default: the config's, 50051).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
POS=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do POS+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
EXTRA=("$@")
if [ "${#POS[@]}" -gt 2 ]; then
  echo "twin.sh: usage: scripts/twin.sh [N] [OUTPUT_DIR] [-- options for every process]" >&2
  exit 2
fi
N="${POS[0]:-2}"
OUT="${POS[1]:-outputs/sim_twin_reach}"
CONFIG="${PIRL_TWIN_CONFIG:-configs/sim_twin_reach.json}"
PORT=()
[ -n "${PIRL_TWIN_PORT:-}" ] && PORT=("--transport.port=$PIRL_TWIN_PORT")
if ! [[ "$N" =~ ^[1-9][0-9]*$ ]]; then
  echo "twin.sh: N must be a positive number of arms, got '$N'" >&2
  exit 2
fi
PIRL="${PIRL:-$ROOT/.venv/bin/pirl}"
[ -x "$PIRL" ] || PIRL="$(command -v pirl || true)"
if [ -z "$PIRL" ]; then
  echo "twin.sh: no pirl command (run make venv first)" >&2
  exit 2
fi
cd "$ROOT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MUJOCO_GL="${MUJOCO_GL:-egl}" PYTHONUNBUFFERED=1
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"  # N+1 processes share the cores: one thread each
mkdir -p "$OUT/logs"

PIDS=()
TAIL=""
start() {  # start NAME ARGS...: a process group of its own, output to its log and (progress lines) here
  local name="$1"
  shift
  setsid "$PIRL" "$@" >"$OUT/logs/$name.log" 2>&1 &
  PIDS+=("$!")
  echo "twin.sh: $name (pid $!) -> $OUT/logs/$name.log"
}

stopping=0
stop_all() {
  [ "$stopping" = 1 ] && return
  stopping=1
  trap '' INT TERM
  echo "twin.sh: stopping the learner (final checkpoint) and $N actor(s)"
  [ -n "$TAIL" ] && { kill -TERM -- "-$TAIL" 2>/dev/null || true; }
  [ "${#PIDS[@]}" -gt 0 ] || return 0
  kill -INT "${PIDS[0]}" 2>/dev/null || true
  for pid in "${PIDS[@]:1}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 300); do
    alive=0
    for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
}
trap 'stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM

start learner learner --config "$CONFIG" --learner.output_dir="$OUT" "${PORT[@]}" "${EXTRA[@]}"
for ((k = 0; k < N; k++)); do
  start "arm$k" actor --config "$CONFIG" --actor.actor_id="arm$k" --robot.seed="$k" "${PORT[@]}" "${EXTRA[@]}"
done
LOGS=("$OUT/logs/learner.log")
for ((k = 0; k < N; k++)); do LOGS+=("$OUT/logs/arm$k.log"); done
# The progress lines of every log, here; a process group of its own, so stopping it stops tail and grep.
setsid bash -c 'tail -n +1 -q -F "$@" 2>/dev/null | grep --line-buffered -E "^(learner:|actor )"' _ "${LOGS[@]}" &
TAIL=$!

# The learner is the run: when it ends (max_updates, an error), stop the actors and report its exit code.
rc=0
wait "${PIDS[0]}" || rc=$?
stop_all
exit "$rc"
