"""Process signals that stop the robot: SIGINT/SIGTERM (stop, release, exit) and an e-stop signal.

Kept out of the guard so the guard reads as robot logic. The handlers run in the main thread between
bytecodes, possibly while that thread is inside a bus transaction, so they never touch the robot
themselves: they call the guard's async-safe `request_estop`, which acts at once if the bus is free and
otherwise on the next control tick. A handler that was installed before ours (the application's own
graceful shutdown) still runs after the e-stop request; otherwise Ctrl-C raises KeyboardInterrupt and
SIGTERM exits, so `with RobotGuard(...)`, `finally` and atexit release the arm.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

EXIT_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class SignalHooks:
    """Installs the handlers; `uninstall()` puts the previous ones back."""

    def __init__(
        self,
        request_estop: Callable[[str], None],
        on_exit: Callable[[], None],
        estop_signal: str = "SIGUSR1",
    ) -> None:
        self._request_estop = request_estop
        self._on_exit = on_exit
        self._estop_signal = estop_signal
        self._old: dict[int, Any] = {}

    def install(self) -> bool:
        """Install in the main thread; returns False (and does nothing) from any other thread."""
        if threading.current_thread() is not threading.main_thread():
            logger.info("guard created off the main thread; signal handlers not installed")
            return False
        estop_sig = None
        if self._estop_signal:
            estop_sig = getattr(signal, self._estop_signal, None)
            if not isinstance(estop_sig, signal.Signals):
                raise ValueError(f"safety.estop_signal {self._estop_signal!r} is not a signal on this OS")
        for sig in EXIT_SIGNALS:
            self._old[sig] = signal.signal(sig, self._exit_handler)
        if estop_sig is not None:
            self._old[estop_sig] = signal.signal(estop_sig, self._estop_handler)
        return True

    def uninstall(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, old in self._old.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(sig, old if old is not None else signal.SIG_DFL)
        self._old.clear()

    def _estop_handler(self, signum: int, _frame: Any) -> None:
        self._request_estop(f"signal {signal.Signals(signum).name}")

    def _exit_handler(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        logger.warning("%s: stopping the robot; it is released when the program exits", name)
        self._request_estop(f"signal {name}")
        self._on_exit()
        old = self._old.get(signum)
        if callable(old) and old is not signal.default_int_handler:
            old(signum, frame)  # the application's own shutdown
            return
        if old == signal.SIG_IGN:
            return
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)
