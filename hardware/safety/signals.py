"""Process signals that stop the robot: SIGINT/SIGTERM (stop, release, exit) and an e-stop signal.

Kept out of the guard so the guard reads as robot logic. The handlers run in the main thread between
bytecodes, possibly while that thread is inside a bus transaction, so they never touch the robot
themselves: they call the guard's async-safe `request_estop`, which acts at once if the bus is free and
otherwise on the next control tick. A handler that was installed before ours (the application's own
graceful shutdown) still runs after the e-stop request; otherwise Ctrl-C raises KeyboardInterrupt and
SIGTERM exits, so `with RobotGuard(...)`, `finally` and atexit release the arm. The e-stop signal
(SIGUSR1 by default) only latches the e-stop: the process goes on.

One process-wide handler per signal serves every installed guard (real or simulated arm alike), so the
e-stop signal stops *every* arm of the process, and guards may be closed in any order: the handler that
was there before the first guard comes back when the last one uninstalls.
"""

from __future__ import annotations

import logging
import signal
import threading
import weakref
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

EXIT_SIGNALS = (signal.SIGINT, signal.SIGTERM)

# Process-wide state, only touched from the main thread (installs, uninstalls and handlers all run there).
_hooks: dict[int, list[weakref.ref[SignalHooks]]] = {}  # signal -> installed hooks, oldest first
_saved: dict[int, Any] = {}  # signal -> the handler that was there before our dispatcher
_dispatching: set[int] = set()  # signals whose dispatch is running (an app handler may call us back)


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
        self._signals: list[int] = []

    def install(self) -> bool:
        """Install in the main thread; returns False (and does nothing) from any other thread."""
        if threading.current_thread() is not threading.main_thread():
            logger.info("guard created off the main thread; signal handlers not installed")
            return False
        if self._signals:
            return True
        estop_sig = None
        if self._estop_signal:
            estop_sig = getattr(signal, self._estop_signal, None)
            if not isinstance(estop_sig, signal.Signals) or estop_sig in EXIT_SIGNALS:
                raise ValueError(
                    f"safety.estop_signal {self._estop_signal!r} is not a usable e-stop signal on this OS"
                )
        sigs = [*EXIT_SIGNALS, *([estop_sig] if estop_sig is not None else [])]
        for sig in sigs:
            _register(int(sig), self)
            self._signals.append(int(sig))
        return True

    def uninstall(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in self._signals:
            _unregister(sig, self)
        self._signals.clear()

    @property
    def installed(self) -> bool:
        return bool(self._signals)


def _live(sig: int) -> list[SignalHooks]:
    """The hooks still installed for `sig` (a guard dropped without close() falls out)."""
    live = [h for ref in _hooks.get(sig, []) if (h := ref()) is not None]
    _hooks[sig] = [weakref.ref(h) for h in live]
    return live


def _register(sig: int, hook: SignalHooks) -> None:
    current = signal.getsignal(sig)
    if current is not _dispatch:  # the first guard, or someone replaced our dispatcher since
        # Guards registered before a replacement no longer get this signal (the replacement took over from
        # them), so they must not keep our dispatcher installed once this guard closes.
        _hooks[sig] = []
        _saved[sig] = current
        signal.signal(sig, _dispatch)
    _hooks.setdefault(sig, []).append(weakref.ref(hook))


def _unregister(sig: int, hook: SignalHooks) -> None:
    _hooks[sig] = [ref for ref in _hooks.get(sig, []) if ref() is not None and ref() is not hook]
    if _live(sig):
        return
    previous = _saved.pop(sig, signal.SIG_DFL)
    if signal.getsignal(sig) is _dispatch:  # leave alone a handler someone installed over ours
        try:
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        except (ValueError, TypeError):
            signal.signal(sig, signal.SIG_DFL)


def _dispatch(signum: int, frame: Any) -> None:
    if signum in _dispatching:  # a chained application handler called back into us
        return
    _dispatching.add(signum)
    try:
        _handle(signum, frame)
    finally:
        _dispatching.discard(signum)


def _handle(signum: int, frame: Any) -> None:
    name = signal.Signals(signum).name
    exiting = signum in EXIT_SIGNALS
    hooks = _live(signum)
    previous = _saved.get(signum, signal.SIG_DFL)
    if not hooks:  # every guard is gone: step aside and let the signal do what it did before us
        signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        _saved.pop(signum, None)
        signal.raise_signal(signum)
        return
    if exiting:
        logger.warning("%s: stopping the robot; it is released when the program exits", name)
    for hook in hooks:
        try:
            hook._request_estop(f"signal {name}")
            if exiting:
                hook._on_exit()
        except Exception:  # one broken guard must not keep the others from stopping
            logger.exception("e-stop on %s failed for one guard", name)
    if callable(previous) and previous is not signal.default_int_handler:
        previous(signum, frame)  # the application's own handler (e.g. its graceful shutdown)
        return
    if not exiting or previous == signal.SIG_IGN:
        return  # the e-stop signal latches the e-stop and the process goes on
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)
