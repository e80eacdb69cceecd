#!/usr/bin/env bash
# The fast lane for edit-test loops: lint, format check and every test not marked `slow` (the end-to-end
# runs: multi-process runtime, demo, long sim runs), in about 4 minutes on a 2-core machine. `make test`
# (what CI runs) is still the full suite. The 10 slowest tests are listed at the end: one that grew past a
# few seconds and runs an end-to-end path belongs under `@pytest.mark.slow`. Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
exec "$ROOT/scripts/test.sh" -m "not slow" --durations=10 "$@"
