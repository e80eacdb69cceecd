"""Where the actor's receive thread puts parameter pushes, and the robot loop picks them up.

The receive thread copies each chunk of a push straight into a staging buffer and the robot loop gets
`Parameters` whose tensors are views of that buffer (no decode copy, see `app.transport.params`). Fresh
payload-sized memory costs 0.3 to 3 s per GB in page faults on the dev VM (a warm copy about 0.1 s), so
buffers are reused, with one rule: a buffer the robot loop may be reading is never written. A buffer is

- spare: free, kept for the next push (at most one; this is the only memory held between pushes),
- filling: owned by the receive thread while a push arrives,
- ready: holds the newest complete push (`take()` returns it),
- lent: returned by `take()`/`wait()`, until `release(version)`; never written meanwhile.

A push starts in the spare; without one, in the ready buffer if nobody took it (it is superseded: latest
wins; until the new push is complete `take()` returns None, and if that push is cut off the learner
sends its current weights again on reconnect); only if there is no spare and the ready buffer is lent
is a new buffer allocated. A caller that never releases leaks nothing: lent buffers that are no longer
ready are held weakly here and freed with the caller's last view.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable

from app.transport.params import Parameters


class StagingBuffer(bytearray):
    """A receive buffer; `version` is that of the push it holds (None while filling or spare)."""

    version: int | None = None


class ParameterStaging:
    """Thread-safe hand-over of parameter pushes from the receive thread to the robot loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._spare: StagingBuffer | None = None
        self._ready: tuple[Parameters, StagingBuffer] | None = None
        self._ready_lent = False
        self._lent: list[weakref.ref[StagingBuffer]] = []  # lent buffers no longer ready

    # ------------------------------------------------------------------------------- receive thread

    def acquire(self, nbytes: int) -> StagingBuffer:
        """A buffer of at least `nbytes` that nobody reads, for the push now arriving."""
        with self._lock:
            spare, self._spare = self._spare, None
            if spare is not None and len(spare) >= nbytes:
                return spare
            if self._ready is not None and not self._ready_lent and len(self._ready[1]) >= nbytes:
                _, buf = self._ready
                self._ready = None
                buf.version = None
                return buf
        return StagingBuffer(nbytes)  # a MemoryError becomes ParameterAssembler's DecodeError

    def discard(self, buf: StagingBuffer) -> None:
        """A buffer whose push was abandoned (error, closed stream): keep it as the spare."""
        with self._lock:
            self._keep(buf)

    def complete(self, params: Parameters, buf: StagingBuffer) -> None:
        """`params` (views of `buf`) is the newest push; the previous ready one is superseded."""
        with self._changed:
            buf.version = params.version
            old, old_lent = self._ready, self._ready_lent
            self._ready, self._ready_lent = (params, buf), False
            if old is not None:
                self._retire(old[1], old_lent)
            self._changed.notify_all()

    def close(self) -> None:
        """Wake `wait()` callers (the client is stopping)."""
        with self._changed:
            self._changed.notify_all()

    # ------------------------------------------------------------------------------------ robot loop

    def take(self, newer_than: int | None = None) -> Parameters | None:
        """The ready push if its version differs from `newer_than`; lends its buffer (never blocks long:
        the lock is only held for bookkeeping, never during a copy)."""
        with self._lock:
            if self._ready is None or (newer_than is not None and self._ready[0].version == newer_than):
                return None
            self._ready_lent = True
            return self._ready[0]

    def wait(self, timeout_s: float, stop: Callable[[], bool]) -> Parameters | None:
        """Block until a push is ready (or `stop()`), then `take()` it."""
        with self._changed:
            self._changed.wait_for(lambda: self._ready is not None or stop(), timeout_s)
            if self._ready is None:
                return None
            self._ready_lent = True
            return self._ready[0]

    def release(self, version: int) -> None:
        """The caller is done with push `version` (copied into its model): its buffer becomes the spare.
        A ready push of another version is kept."""
        with self._lock:
            if self._ready is not None and self._ready[0].version == version:
                _, buf = self._ready
                self._ready, self._ready_lent = None, False
                self._keep(buf)
            still_lent = []
            for ref in self._lent:
                buf = ref()
                if buf is not None and buf.version == version:
                    self._keep(buf)
                elif buf is not None:
                    still_lent.append(ref)
            self._lent = still_lent

    # ---------------------------------------------------------------------------------------- state

    @property
    def buffers_held(self) -> int:
        """Buffers this object keeps alive (spare + ready): what the actor holds besides its model."""
        with self._lock:
            return (self._spare is not None) + (self._ready is not None)

    def _retire(self, buf: StagingBuffer, lent: bool) -> None:
        if lent:  # the caller may still read it: never written until released, and only held weakly
            self._lent.append(weakref.ref(buf))
        else:
            self._keep(buf)

    def _keep(self, buf: StagingBuffer) -> None:
        """Keep `buf` as the spare (the larger one if there is one already); the other is dropped."""
        buf.version = None
        if self._spare is None or len(buf) > len(self._spare):
            self._spare = buf
