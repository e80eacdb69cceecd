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


def pytest_collection_modifyitems(config, items):
    """The end-to-end tests (`slow`, each a minute or more) first, in collection order, then the rest.

    With parallel workers (scripts/test.sh runs pytest-xdist) a long test that starts last keeps one worker
    busy after the others have finished; started first, the short tests fill in around it. Every worker
    collects the same order, as xdist requires. Without xdist the order changes nothing that a test may
    rely on: tests are independent.
    """
    items[:] = sorted(items, key=lambda item: 0 if item.get_closest_marker("slow") else 1)
