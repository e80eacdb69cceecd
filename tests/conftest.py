"""Suite-wide settings: offline and headless, and no test leaks its signal handlers into the next one."""

from __future__ import annotations

import os
import signal

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MUJOCO_GL", "egl")

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)

# A suite started in the background of a non-interactive shell (`cmd &`, nohup) inherits SIGINT ignored,
# and so would every subprocess it starts: the Ctrl-C tests would then test nothing and fail. Give this
# process (and, through exec, its children) the normal Ctrl-C behaviour back.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _restore_signal_handlers():
    """Commands run in-process (learner/actor/console mains, guards) install SIGINT/SIGTERM handlers; a
    handler left behind would turn a later test's Ctrl-C into someone else's clean stop."""
    saved = {s: signal.getsignal(s) for s in _STOP_SIGNALS}
    yield
    for sig, handler in saved.items():
        if signal.getsignal(sig) is not handler and handler is not None:
            signal.signal(sig, handler)


# scripts/test.sh runs the suite in two phases when it runs parallel workers: PIRL_TEST_PHASE=parallel (every
# test not marked `timing`, on the workers) then PIRL_TEST_PHASE=timing (only those, one at a time). Unset:
# every test, in one run.
PHASE_ENV = "PIRL_TEST_PHASE"
PHASES = ("parallel", "timing")


def pytest_collection_modifyitems(config, items):
    """Select this phase's tests, then put the end-to-end tests (`slow`, each a minute or more) first.

    Phase: a `timing` test asserts a wall-clock bound on live threads or processes (a hold within the link
    timeout, a watchdog's latency, a pacer's period). On a 2-core machine loaded by the other workers' learner
    and actor processes such a bound fails now and then for no fault of the code, so scripts/test.sh runs
    those tests alone after the parallel phase, on a quiet machine, with their bounds unchanged.

    Order: with parallel workers (pytest-xdist) a long test that starts last keeps one worker busy after the
    others have finished; started first, the short tests fill in around it. Every worker collects the same
    order, as xdist requires. Without xdist the order changes nothing that a test may rely on: tests are
    independent.
    """
    phase = os.environ.get(PHASE_ENV, "")
    if phase:
        if phase not in PHASES:
            raise pytest.UsageError(f"{PHASE_ENV} must be one of {PHASES} or unset, got {phase!r}")
        want_timing = phase == "timing"
        keep = [item for item in items if (item.get_closest_marker("timing") is not None) == want_timing]
        drop = [item for item in items if (item.get_closest_marker("timing") is not None) != want_timing]
        if drop:
            config.hook.pytest_deselected(items=drop)
        items[:] = keep
    items[:] = sorted(items, key=lambda item: 0 if item.get_closest_marker("slow") else 1)
