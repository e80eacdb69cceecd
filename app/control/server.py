"""The actor's end of the control channel: a loopback listener served by one daemon I/O thread.

Nothing here blocks the actor's control loop (protocol and guarantees: app/control/protocol.py). Each run
writes a fresh token (app/control/auth.py); a peer is a console only after a hello with it. Before that
it may e-stop and nothing else."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from app.control import auth
from app.control.protocol import (
    CONSOLE_MESSAGES,
    MAX_LINE,
    PROTOCOL,
    ActorStatus,
    Command,
    CommandMessage,
    ControlConfig,
    Hello,
    describe,
    encode_line,
    status_payload,
)

log = logging.getLogger("pirl.control.server")

# ---------------------------------------------------------------------------------------- actor side


class _Peer:
    """One connected console, seen from the actor's I/O thread."""

    def __init__(self, sock: socket.socket, name: str, now: float) -> None:
        self.sock = sock
        self.name = name
        self.inbuf = bytearray()
        self.out = bytearray()  # bytes being written now
        self.acks: deque[bytes] = deque()
        self.status: bytes | None = None  # the latest status not yet written (latest-only)
        self.last_heard = now
        self.authenticated = False  # a hello with this run's token came: a console, not just a peer
        self.refused_once = False  # a refused command was logged (one warning per peer, not a flood)
        self.dropped = False

    def wants_write(self) -> bool:
        return bool(self.out or self.acks or self.status)


class ControlServer:
    """The actor's end: a loopback listener run by one daemon I/O thread.

    Thread safety: `publish`, `poll_commands`, `status_due` and the properties may be called from any
    thread; they only take a short lock and poke the I/O thread.
    """

    def __init__(self, cfg: ControlConfig | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg or ControlConfig()
        self.cfg.validate()
        self._clock = clock
        # Called from the I/O thread as soon as an ESTOP arrives (before the loop polls it). Must be fast
        # and thread-safe (e.g. RobotGuard.estop). Exceptions are logged, and the command is still queued.
        self.on_estop: Callable[[], Any] | None = None
        self._lock = threading.Lock()
        self._commands: deque[tuple[_Peer, int | None, Command]] = deque()
        self._peers: dict[int, _Peer] = {}
        self._status: bytes | None = None
        self._last_publish = -1e9
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.address: str | tuple[str, int] | None = None
        # This run's token file (set by start(); the console reads it) and the secret in it.
        self.token_path: Path | None = None
        self._token = ""
        self.commands_received = 0
        self.statuses_sent = 0

    # -- lifecycle

    def start(self) -> ControlServer:
        if self.cfg.unix_socket:
            path = self.cfg.unix_socket
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            lst.bind(path)
            os.chmod(path, 0o600)
            self.address = path
            token_path = self.cfg.token_path()
        else:
            family = socket.AF_INET6 if ":" in self.cfg.host else socket.AF_INET
            lst = socket.socket(family, socket.SOCK_STREAM)
            lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                lst.bind((self.cfg.host, self.cfg.port))
            except OSError as exc:
                lst.close()
                raise OSError(
                    f"control channel cannot listen on {self.cfg.host}:{self.cfg.port} ({exc}); another "
                    "actor may be running, or pick a free port with --control.port"
                ) from exc
            self.address = lst.getsockname()[:2]
            token_path = self.cfg.token_path(port=self.address[1])
        # Before listen(): a console that gets in finds the token of this run, never a missing file.
        token = auth.new_token()
        try:
            auth.write_token(token_path, token)
        except OSError as exc:
            lst.close()
            if self.cfg.unix_socket:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.cfg.unix_socket)
            raise OSError(
                f"control channel cannot write its token file {token_path} ({exc}); set "
                "--control.token_file to a path in a directory this user owns"
            ) from exc
        self.token_path, self._token = token_path, token
        lst.listen(4)
        lst.setblocking(False)
        self._listener = lst
        self._sel.register(lst, selectors.EVENT_READ, "accept")
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._thread = threading.Thread(target=self._run, name="pirl-control", daemon=True)
        self._thread.start()
        log.info("control channel listening on %s (token in %s)", self.address, self.token_path)
        return self

    def close(self) -> None:
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        for peer in list(self._peers.values()):
            self._drop(peer, "actor closing")
        if self._listener is not None:
            self._listener.close()
            if self.cfg.unix_socket:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.cfg.unix_socket)
        if self.token_path is not None:
            auth.remove_token(self.token_path, self._token)
        self._sel.close()
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self) -> ControlServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the actor loop's API

    @property
    def clients(self) -> int:
        """Authenticated consoles connected now (peers without the token are not consoles)."""
        with self._lock:
            return len(self._consoles())

    @property
    def connections(self) -> int:
        """Every connected peer, authenticated or not."""
        with self._lock:
            return len(self._peers)

    @property
    def console_alive(self) -> bool:
        """An authenticated console has been heard from within `console_timeout_s` (any message counts)."""
        age = self.seconds_since_console()
        return age is not None and age <= self.cfg.console_timeout_s

    def seconds_since_console(self) -> float | None:
        with self._lock:
            consoles = self._consoles()
            if not consoles:
                return None
            return self._clock() - max(p.last_heard for p in consoles)

    def status_due(self) -> bool:
        """True when a console is connected and a status was last published >= 1/rate_hz ago."""
        with self._lock:
            return bool(self._consoles()) and self._clock() - self._last_publish >= 1.0 / self.cfg.rate_hz

    def _consoles(self) -> list[_Peer]:  # with self._lock held
        return [p for p in self._peers.values() if p.authenticated]

    def publish(self, status: ActorStatus, force: bool = False) -> bool:
        """Queue a status for every console (latest-only). Returns False when dropped by the rate limit
        (or nobody listens). Encoding happens here, so the caller may reuse `status` afterwards."""
        if not force and not self.status_due():
            return False
        data = encode_line({"type": "status", "status": status_payload(status)})
        with self._lock:
            self._last_publish = self._clock()
            self._status = data
            for peer in self._consoles():  # statuses carry camera frames: consoles only
                peer.status = data
        self._wake()
        return True

    def poll_commands(self) -> list[Command]:
        """Commands received since the last call, oldest first; each is acknowledged to its console."""
        with self._lock:
            taken = list(self._commands)
            self._commands.clear()
            for peer, cid, _ in taken:
                peer.acks.append(
                    encode_line({"type": "ack", "id": cid, "ok": True, "detail": "taken by the actor"})
                )
        if taken:
            self._wake()
        return [cmd for _, _, cmd in taken]

    # -- I/O thread

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"\0")

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                for peer in self._peers.values():
                    ev = selectors.EVENT_READ | (selectors.EVENT_WRITE if peer.wants_write() else 0)
                    self._sel.modify(peer.sock, ev, peer)
            try:
                events = self._sel.select(timeout=0.25)
            except OSError:  # closed under us during shutdown
                return
            for key, mask in events:
                if key.data == "accept":
                    self._accept()
                elif key.data == "wake":
                    with contextlib.suppress(BlockingIOError, OSError):
                        self._wake_r.recv(4096)
                else:
                    peer: _Peer = key.data
                    if mask & selectors.EVENT_READ:
                        self._read(peer)
                    if mask & selectors.EVENT_WRITE and peer.sock.fileno() >= 0:
                        self._write(peer)

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            sock, addr = self._listener.accept()
        except (BlockingIOError, OSError):
            return
        sock.setblocking(False)
        peer = _Peer(sock, str(addr) or "unix", self._clock())
        peer.acks.append(encode_line({"type": "hello", "protocol": PROTOCOL}))
        with self._lock:
            self._peers[sock.fileno()] = peer  # no status before it authenticates
        self._sel.register(sock, selectors.EVENT_READ, peer)
        log.info("peer connected (%s)", peer.name)

    def _drop(self, peer: _Peer, why: str) -> None:
        with self._lock:
            if self._peers.pop(peer.sock.fileno(), None) is None:
                return
            peer.dropped = True
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._sel.unregister(peer.sock)
        peer.sock.close()
        log.info("console disconnected (%s): %s", peer.name, why)

    def _read(self, peer: _Peer) -> None:
        try:
            chunk = peer.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as exc:
            self._drop(peer, str(exc))
            return
        if not chunk:
            self._drop(peer, "closed")
            return
        peer.inbuf += chunk
        with self._lock:
            peer.last_heard = self._clock()
        while b"\n" in peer.inbuf:
            raw, _, rest = peer.inbuf.partition(b"\n")
            peer.inbuf = bytearray(rest)
            self._handle(peer, bytes(raw))
            if peer.dropped:
                return
        if len(peer.inbuf) > MAX_LINE:
            self._drop(peer, "line too long")

    def _handle(self, peer: _Peer, raw: bytes) -> None:
        try:
            msg = json.loads(raw)
            kind = msg["type"]
        except (ValueError, KeyError, TypeError):
            log.warning("console %s sent a malformed line; ignored", peer.name)
            return
        model = CONSOLE_MESSAGES.get(kind) if isinstance(kind, str) else None
        if model is None:
            log.warning("console %s sent unknown message type %r; ignored", peer.name, kind)
            return
        if kind == "hello" and msg.get("protocol") != PROTOCOL:  # the version before the shape
            self._refuse(peer, f"console speaks control protocol {msg.get('protocol')}, actor {PROTOCOL}")
            return
        try:
            message = model.model_validate(msg)
        except ValidationError as err:
            detail = f"malformed {kind}: {describe(err)}"
            if kind == "hello":
                self._refuse(peer, detail)
            else:  # a command: say why in its ack (its id as sent, so the console can match it)
                with self._lock:
                    peer.acks.append(
                        encode_line({"type": "ack", "id": msg.get("id"), "ok": False, "detail": detail})
                    )
            return
        if isinstance(message, Hello):
            self._hello(peer, message)
        elif isinstance(message, CommandMessage):
            self._command(peer, message.id, message.command)

    def _command(self, peer: _Peer, cid: int | None, cmd: Command) -> None:
        if cmd is not Command.ESTOP and not peer.authenticated:
            # Anyone who can reach the port may stop the arm; only the console holding the token of this
            # run may clear an e-stop, start, or do anything else.
            detail = (
                f"not authenticated: the console reads the token from {self.token_path}; without it "
                "only e-stop is taken"
            )
            if not peer.refused_once:
                peer.refused_once = True
                log.warning("refused %s from %s: not authenticated", cmd.value, peer.name)
            with self._lock:
                peer.acks.append(encode_line({"type": "ack", "id": cid, "ok": False, "detail": detail}))
            return
        self.commands_received += 1
        if cmd is Command.ESTOP and self.on_estop is not None:
            try:
                self.on_estop()
            except Exception:  # the loop still gets the command and latches it itself
                log.exception("on_estop handler failed")
        with self._lock:
            self._commands.append((peer, cid, cmd))

    def _hello(self, peer: _Peer, hello: Hello) -> None:
        if not auth.same_token(hello.token, self._token):
            what = "wrong token" if hello.token else "no token"
            self._refuse(
                peer, f"{what}; this run's token is in {self.token_path} (readable by its user only)"
            )
        else:
            with self._lock:
                peer.authenticated = True
                peer.status = self._status  # a console that connects late gets the latest status at once
                peer.acks.append(encode_line({"type": "auth", "ok": True}))
            log.info("console authenticated (%s)", peer.name)

    def _refuse(self, peer: _Peer, detail: str) -> None:
        """Tell the peer why (best effort, never waiting on its socket) and hang up."""
        log.warning("refused console %s: %s", peer.name, detail)
        with self._lock:
            pending = bytes(peer.out) + b"".join(peer.acks)
            peer.authenticated = False
        with contextlib.suppress(OSError):
            peer.sock.send(pending + encode_line({"type": "auth", "ok": False, "detail": detail}))
            peer.sock.shutdown(socket.SHUT_WR)  # FIN after the answer
            for _ in range(16):  # closing with unread input would reset the answer away (bounded)
                if not peer.sock.recv(65536):
                    break
        self._drop(peer, "refused")

    def _write(self, peer: _Peer) -> None:
        with self._lock:
            if not peer.out:
                if peer.acks:
                    peer.out += peer.acks.popleft()
                elif peer.status is not None:
                    peer.out += peer.status
                    peer.status = None
                    self.statuses_sent += 1
            data = bytes(peer.out)
        if not data:
            return
        try:
            n = peer.sock.send(data)
        except BlockingIOError:
            return
        except OSError as exc:
            self._drop(peer, str(exc))
            return
        with self._lock:
            del peer.out[:n]
