"""Suite-wide settings: offline and headless, and no test leaks its signal handlers into the next one."""

from __future__ import annotations

import os
import signal
import sys

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


def _normal_scheduling() -> str | None:
    """Put every thread of this process back on the normal time-sharing policy; the policy found if not.

    Seen once in a parallel CI run: both xdist workers ran SCHED_FIFO at priority 99 (not set by pirl's
    code or any Python package here; a native library did it), and a child process spinning at that
    priority starved its own test's worker on a 2-core machine, so the worker never woke from
    `time.sleep` and even pytest-timeout's SIGALRM stayed pending: the suite hung. Children inherit the
    policy of the thread that starts them, so resetting before each test keeps it from spreading."""
    if not hasattr(os, "sched_getscheduler"):
        return None
    found = None
    for tid in (int(t) for t in os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else [0]:
        try:
            policy = os.sched_getscheduler(tid)
            if policy != os.SCHED_OTHER:
                found = found or f"policy {policy}, priority {os.sched_getparam(tid).sched_priority}"
                os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
        except OSError:  # a thread that ended meanwhile, or no permission: nothing to do
            pass
    return found


@pytest.fixture(autouse=True)
def _normal_scheduling_around_each_test(request):
    found = _normal_scheduling()
    if found:
        print(
            f"\npirl tests: the process was on a real-time scheduling policy ({found}) before "
            f"{request.node.nodeid}; reset to normal",
            file=sys.stderr,
        )
    yield


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
