"""Network faults on loopback for the benchmarks and the tests: a TCP proxy that can black-hole a link.

A link that dies quietly (a black-holed route: TCP stays open, the peer's kernel still acknowledges what is
sent, nothing is forwarded) is what a watchdog fed from "the connection is open" never notices, so the
fault campaign (benchmarks/faults.py) and the actor's link-loss test (tests/app/actor/test_link_loss.py)
both put this proxy between an actor and a learner and freeze it. Standard library only.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class BlackHoleProxy:
    """TCP proxy on loopback between the actor and the learner. `freeze()` stops forwarding both ways
    while every socket stays open (a black-holed route); `thaw()` resumes. A side that closes closes the
    other (a killed learner looks like one to the actor)."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = int(self._listener.getsockname()[1])
        self._flowing = threading.Event()
        self._flowing.set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    def close(self) -> None:
        self._stop.set()
        self._flowing.set()
        self._listener.close()
        with self._lock:
            for s in self._socks:
                with contextlib.suppress(OSError):
                    s.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=1.0)
            except OSError:  # no learner: refuse like it would
                client.close()
                continue
            with self._lock:
                self._socks = [s for s in self._socks if s.fileno() != -1] + [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            src.settimeout(0.05)  # inside the try: close() may have closed it before this thread ran
            while not self._stop.is_set():
                if not self._flowing.is_set():
                    self._flowing.wait(0.05)
                    continue
                try:
                    data = src.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    break
                while not self._flowing.is_set() and not self._stop.is_set():  # frozen meanwhile: hold it
                    self._flowing.wait(0.05)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()
