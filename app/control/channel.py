"""The console <-> actor control channel: status out, operator commands in, JSON lines over loopback.

The operator console observes the actor and sends it commands; it owns no robot logic. This module is the
whole contract between the two processes, so either can be restarted, frozen or killed without the other
noticing anything but silence. The actor keeps the robot safe on its own: nothing here is needed for
safety, and no call on the actor side ever blocks the control loop.

Actor side (all calls are non-blocking; the loop never waits for a console)::

    from app.control.channel import ActorStatus, Command, ControlConfig, ControlServer

    server = ControlServer(ControlConfig(port=7070))       # or ControlConfig(unix_socket="/tmp/pirl.sock")
    server.on_estop = guard.estop                           # optional: latch at once, from the I/O thread
    server.start()
    while running:
        for cmd in server.poll_commands():                  # operator commands since last call, in order
            handle(cmd)                                     # cmd is a Command (a str enum)
        ...
        if server.status_due():                             # ~10 Hz, and only while a console listens
            server.publish(ActorStatus(...))                # encoded at once; later mutation is harmless
        if not server.console_alive: ...                    # optional: no console heartbeat for 2 s
    server.close()

Console side (asyncio)::

    client = ControlClient(ControlConfig(port=7070), on_status=show)
    task = asyncio.create_task(client.run())                # connects, reconnects, heartbeats
    ack = await client.send(Command.ESTOP)                  # Ack(ok, detail); ok=False on timeout

Wire format: one UTF-8 JSON object per line (never pickle, so a console cannot run code in the actor).

    console -> actor   {"type": "hello", "protocol": 1, "client": "console"}
                       {"type": "heartbeat"}                                  every heartbeat_s
                       {"type": "command", "id": 7, "command": "estop"}
    actor -> console   {"type": "hello", "protocol": 1}
                       {"type": "status", "status": {...ActorStatus...}}      at most rate_hz
                       {"type": "ack", "id": 7, "ok": true, "detail": "..."}

A command is acknowledged when the actor loop takes it (`poll_commands`), so an ack means "the actor has
it", not "the network has it"; a stalled actor shows up on the console as a missing ack. E-stop is also
handed to `on_estop` straight from the I/O thread, so it latches even while the loop is busy. Statuses
are latest-only per console: a slow or frozen console skips statuses, it never queues them, and the actor
never buffers more than one status per console.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import enum
import ipaddress
import itertools
import json
import logging
import os
import selectors
import socket
import threading
import time
import types
import typing
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any

import numpy as np

log = logging.getLogger("pirl.actor.control")

PROTOCOL = 1
_MAX_LINE = 1 << 20  # a status with camera thumbnails is ~20 KB; anything near 1 MiB is garbage


# --------------------------------------------------------------------------------------------- config


@dataclass
class ControlConfig:
    # Loopback address the actor listens on and the console connects to. Only loopback is accepted: the
    # channel can stop and start a robot, so a remote console goes through `ssh -L`, never an open port.
    host: str = "127.0.0.1"
    # TCP port (0 on the actor binds a free one; read it back from `ControlServer.address`).
    port: int = 7070
    # Unix socket path; when set it replaces host/port (file permissions then guard the robot).
    unix_socket: str | None = None
    # Most statuses per second sent to each console (the actor may publish more often; extras are dropped).
    rate_hz: float = 10.0
    # Seconds between console heartbeats.
    heartbeat_s: float = 0.5
    # The actor counts the console as gone after this long without any message from it.
    console_timeout_s: float = 2.0
    # The console waits this long for the actor to take a command before reporting it as not taken.
    ack_timeout_s: float = 2.0

    def validate(self) -> None:
        if self.unix_socket is None:
            try:
                loopback = self.host == "localhost" or ipaddress.ip_address(self.host).is_loopback
            except ValueError:
                loopback = False
            if not loopback:
                raise ValueError(
                    f"control.host={self.host!r} is not a loopback address; the control channel only "
                    "listens on 127.0.0.1 (use `ssh -L 7070:127.0.0.1:7070 robot-box` for a remote console)"
                )
            if not 0 <= self.port <= 65535:
                raise ValueError(f"control.port must be 0..65535, got {self.port}")
        if self.rate_hz <= 0 or self.heartbeat_s <= 0 or self.console_timeout_s <= self.heartbeat_s:
            raise ValueError(
                "control: need rate_hz > 0, heartbeat_s > 0 and console_timeout_s > heartbeat_s "
                f"(got {self.rate_hz}, {self.heartbeat_s}, {self.console_timeout_s})"
            )


# ------------------------------------------------------------------------------------------- commands


class Command(enum.StrEnum):
    """What an operator can ask the actor to do. The actor decides whether and how (e.g. no start while
    the e-stop is latched); ESTOP is the one command every actor state must honour at once."""

    START = "start"  # start (or resume) episodes
    PAUSE = "pause"  # finish nothing new: hold after the current step, start no new episode
    TAKEOVER_ON = "takeover_on"  # the human (leader arm / gamepad) drives; for teleops without a button
    TAKEOVER_OFF = "takeover_off"  # hand control back to the policy
    SUCCESS = "success"  # end the current episode as a success
    FAILURE = "failure"  # end the current episode as a failure
    RERECORD = "rerecord"  # discard the current episode and record it again
    RESET = "reset"  # move to the reset pose / reset the scene
    ESTOP = "estop"  # latch the emergency stop: the robot holds until CLEAR_ESTOP
    CLEAR_ESTOP = "clear_estop"  # release the latch (the robot keeps holding until START)
    QUIT = "quit"  # safe shutdown of the actor


@dataclass(frozen=True)
class Ack:
    """The actor's answer to one command (or the console's verdict when none came)."""

    command: Command
    ok: bool
    detail: str = ""


# --------------------------------------------------------------------------------------------- status


@dataclass
class JointStatus:
    name: str
    present: float  # measured position (deg; gripper 0..100)
    commanded: float | None  # last target sent to the robot after safety; None before the first
    lower: float  # safety limits in force
    upper: float
    clamped: bool = False  # the safety layer changed this joint's command since the previous status
    clamp_count: int = 0  # ... and how often in this episode


@dataclass
class EpisodeStatus:
    number: int = 0  # from 1, as in the actor's progress lines (a re-recorded episode keeps its number)
    state: str = "idle"  # idle | running | paused | resetting | holding | done | stopped
    time_left_s: float | None = None
    length_s: float | None = None  # time limit of an episode
    reward: float = 0.0  # return so far
    outcome: str | None = None  # "success" | "failure" | None (not decided yet)
    intervention: bool = False  # a human drives right now
    interventions: int = 0  # takeovers in this episode
    takeover_source: str = ""  # e.g. "leader arm", "gamepad"; "" when no teleop is configured


@dataclass
class LearnerLinkStatus:
    connected: bool = False
    address: str = ""
    policy_version: int | None = None
    seconds_since_weights: float | None = None
    queue_depth: int = 0  # rollouts waiting to be sent
    rtt_ms: float | None = None


@dataclass
class LoopStatus:
    hz: float = 0.0  # measured control rate
    target_hz: float = 0.0  # 0: no wall-clock target (a lockstep simulator steps as fast as it can)
    inference_ms: float | None = None  # policy time per chunk or step, recent mean
    dropped_steps: int = 0  # steps that missed their deadline
    steps: int = 0


@dataclass
class EpisodeRecord:
    """One finished episode, for the learning curves."""

    number: int
    success: bool | None
    episode_return: float
    interventions: int = 0
    intervention_rate: float = 0.0  # fraction of steps a human drove
    steps: int = 0


@dataclass
class LogLine:
    seq: int  # increasing; the console appends only lines newer than what it has
    level: str
    text: str


@dataclass
class CameraThumbnail:
    """A small RGB preview: width*height*3 uint8 bytes, row-major, base64 (a 64x48 frame is ~12 KB)."""

    width: int
    height: int
    rgb: str

    @classmethod
    def from_array(cls, frame: np.ndarray, max_width: int = 64, max_height: int = 48) -> CameraThumbnail:
        """Downscale an HxWx3 uint8 frame by block averaging, keeping its aspect ratio."""
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] < 3:
            raise ValueError(f"camera frame must be HxWx3, got shape {frame.shape}")
        h, w = frame.shape[:2]
        step = max(1, int(np.ceil(max(w / max_width, h / max_height))))
        hh, ww = h // step, w // step
        blocks = frame[: hh * step, : ww * step, :3].astype(np.float32)
        small = blocks.reshape(hh, step, ww, step, 3).mean(axis=(1, 3))
        small = np.clip(small + 0.5, 0, 255).astype(np.uint8)
        return cls(ww, hh, base64.b64encode(small.tobytes()).decode("ascii"))

    def to_array(self) -> np.ndarray:
        data = np.frombuffer(base64.b64decode(self.rgb), dtype=np.uint8)
        if data.size != self.width * self.height * 3:
            raise ValueError(f"thumbnail holds {data.size} bytes, expected {self.width}x{self.height}x3")
        return data.reshape(self.height, self.width, 3)


@dataclass
class ActorStatus:
    """Everything the console shows, as one JSON-able snapshot the actor publishes."""

    robot: str = ""  # e.g. "sim_so101" or "so101_follower arm1"
    estop: bool = False  # the e-stop is latched
    holding: bool = False  # the robot holds its position (e-stop, paused, watchdog, ...)
    hold_reason: str = ""
    joints: list[JointStatus] = field(default_factory=list)
    safety_events: dict[str, int] = field(default_factory=dict)  # this episode, by kind ("max_step": 3)
    episode: EpisodeStatus = field(default_factory=EpisodeStatus)
    learner: LearnerLinkStatus = field(default_factory=LearnerLinkStatus)
    loop: LoopStatus = field(default_factory=LoopStatus)
    history: list[EpisodeRecord] = field(default_factory=list)  # recent finished episodes, oldest first
    log: list[LogLine] = field(default_factory=list)  # recent log lines, oldest first
    cameras: dict[str, CameraThumbnail] = field(default_factory=dict)  # only cameras that exist

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ActorStatus:
        """Tolerant decoding: unknown keys are ignored and missing ones take defaults, so an older
        console still reads a newer actor's status."""
        return _build(cls, data)


class JointView:
    """Builds the joints part of a status from the guard's numbers, remembering clamp counts so that
    `clamped` means "clamped since the previous status" even when the loop runs faster than the status.

        view = JointView()
        gs = guard.status()
        status.joints = view(gs.present, gs.commanded, gs.limits, gs.episode_safety.get("events", {}))
    """

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def __call__(
        self,
        present: dict[str, float],
        commanded: dict[str, float],
        limits: dict[str, tuple[float, float]],
        events: dict[str, int],
    ) -> list[JointStatus]:
        """Keys may be "<motor>" or "<motor>.pos"; events are the safety layer's "kind:motor" counters."""
        per_joint: dict[str, int] = {}
        for name, n in events.items():
            _, _, motor = name.partition(":")
            if motor:
                per_joint[motor] = per_joint.get(motor, 0) + int(n)
        if sum(per_joint.values()) < sum(self._seen.values()):  # a new episode reset the counters
            self._seen = {}
        out = []
        for motor, (lo, hi) in limits.items():
            key = motor.removesuffix(".pos")
            pres = present.get(key, present.get(f"{key}.pos", float("nan")))
            cmd = commanded.get(key, commanded.get(f"{key}.pos"))
            count = per_joint.get(key, 0)
            out.append(
                JointStatus(
                    key,
                    float(pres),
                    None if cmd is None else float(cmd),
                    float(lo),
                    float(hi),
                    clamped=count > self._seen.get(key, 0),
                    clamp_count=count,
                )
            )
        self._seen = per_joint
        return out


class LogBuffer(logging.Handler):
    """The actor's recent log lines for the console's log pane: a bounded deque, each line numbered, so a
    console appends every line once however often it sees it (and a late console still gets the tail).

        buf = LogBuffer(); logging.getLogger("pirl").addHandler(buf)   # WARNING/INFO records
        buf.add("INFO", "episode 3 success")                          # or lines from elsewhere
        status.log = buf.lines()
    """

    def __init__(self, maxlen: int = 40, level: int = logging.INFO) -> None:
        super().__init__(level)
        self._lines: deque[LogLine] = deque(maxlen=maxlen)
        self._seq = 0
        self._guard = threading.Lock()  # emit() runs on whatever thread logged

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.add(record.levelname, record.getMessage())
        except Exception:  # a bad format string must never break the thread that logged
            self.handleError(record)

    def add(self, level: str, text: str) -> None:
        with self._guard:
            self._seq += 1
            self._lines.append(LogLine(self._seq, level, text))

    def lines(self) -> list[LogLine]:
        with self._guard:
            return list(self._lines)


def _build(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    if is_dataclass(tp):
        if not isinstance(value, dict):
            raise ValueError(f"expected an object for {tp.__name__}, got {type(value).__name__}")
        hints = typing.get_type_hints(tp)
        kwargs = {f.name: _build(hints[f.name], value[f.name]) for f in fields(tp) if f.name in value}
        return tp(**kwargs)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is list:
        return [_build(args[0], v) for v in value]
    if origin is dict:
        return {str(k): _build(args[1], v) for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _build(inner[0], value) if len(inner) == 1 else value
    if tp is float and isinstance(value, int | float):
        return float(value)
    return value


def _line(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, separators=(",", ":"), allow_nan=False) + "\n").encode()


def _safe_status_dict(status: ActorStatus) -> dict[str, Any]:
    """JSON has no NaN/inf: report them as null rather than breaking the stream."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not np.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    return clean(status.to_dict())


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
        self._commands: deque[tuple[_Peer, int, Command]] = deque()
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
        lst.listen(4)
        lst.setblocking(False)
        self._listener = lst
        self._sel.register(lst, selectors.EVENT_READ, "accept")
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._thread = threading.Thread(target=self._run, name="pirl-control", daemon=True)
        self._thread.start()
        log.info("control channel listening on %s", self.address)
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
        with self._lock:
            return len(self._peers)

    @property
    def console_alive(self) -> bool:
        """A console has been heard from within `console_timeout_s` (any message counts)."""
        age = self.seconds_since_console()
        return age is not None and age <= self.cfg.console_timeout_s

    def seconds_since_console(self) -> float | None:
        with self._lock:
            if not self._peers:
                return None
            return self._clock() - max(p.last_heard for p in self._peers.values())

    def status_due(self) -> bool:
        """True when a console is connected and a status was last published >= 1/rate_hz ago."""
        with self._lock:
            return bool(self._peers) and self._clock() - self._last_publish >= 1.0 / self.cfg.rate_hz

    def publish(self, status: ActorStatus, force: bool = False) -> bool:
        """Queue a status for every console (latest-only). Returns False when dropped by the rate limit
        (or nobody listens). Encoding happens here, so the caller may reuse `status` afterwards."""
        if not force and not self.status_due():
            return False
        data = _line({"type": "status", "status": _safe_status_dict(status)})
        with self._lock:
            self._last_publish = self._clock()
            self._status = data
            for peer in self._peers.values():
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
                    _line({"type": "ack", "id": cid, "ok": True, "detail": "taken by the actor"})
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
        peer.acks.append(_line({"type": "hello", "protocol": PROTOCOL}))
        with self._lock:
            self._peers[sock.fileno()] = peer
            peer.status = self._status
        self._sel.register(sock, selectors.EVENT_READ, peer)
        log.info("console connected (%s)", peer.name)

    def _drop(self, peer: _Peer, why: str) -> None:
        with self._lock:
            if self._peers.pop(peer.sock.fileno(), None) is None:
                return
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
        if len(peer.inbuf) > _MAX_LINE:
            self._drop(peer, "line too long")

    def _handle(self, peer: _Peer, raw: bytes) -> None:
        try:
            msg = json.loads(raw)
            kind = msg["type"]
        except (ValueError, KeyError, TypeError):
            log.warning("console %s sent a malformed line; ignored", peer.name)
            return
        if kind in ("hello", "heartbeat"):
            return
        if kind != "command":
            log.warning("console %s sent unknown message type %r; ignored", peer.name, kind)
            return
        cid = msg.get("id")
        try:
            cmd = Command(msg.get("command"))
        except ValueError:
            valid = ", ".join(c.value for c in Command)
            detail = f"unknown command {msg.get('command')!r}; valid: {valid}"
            with self._lock:
                peer.acks.append(_line({"type": "ack", "id": cid, "ok": False, "detail": detail}))
            return
        self.commands_received += 1
        if cmd is Command.ESTOP and self.on_estop is not None:
            try:
                self.on_estop()
            except Exception:  # the loop still gets the command and latches it itself
                log.exception("on_estop handler failed")
        with self._lock:
            self._commands.append((peer, cid, cmd))

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


# -------------------------------------------------------------------------------------- console side


class ControlClient:
    """The console's end: connects (and reconnects) to the actor, heartbeats, streams statuses.

    `on_status(status)` and `on_connection(connected, detail)` are called from the event loop that runs
    `run()`, so a Textual app can update widgets in them directly.
    """

    def __init__(
        self,
        cfg: ControlConfig | None = None,
        on_status: Callable[[ActorStatus], Any] | None = None,
        on_connection: Callable[[bool, str], Any] | None = None,
        retry_s: float = 0.5,
    ) -> None:
        self.cfg = cfg or ControlConfig()
        self.cfg.validate()
        self.on_status = on_status
        self.on_connection = on_connection
        self.retry_s = retry_s
        self.latest: ActorStatus | None = None
        self.connected = False
        self._writer: asyncio.StreamWriter | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[Command, asyncio.Future[Ack]]] = {}
        self._new_status = asyncio.Event()
        self._closed = False

    async def run(self) -> None:
        """Connect, read until the actor goes away, retry; returns only after `close()`."""
        while not self._closed:
            try:
                if self.cfg.unix_socket:
                    reader, writer = await asyncio.open_unix_connection(self.cfg.unix_socket, limit=_MAX_LINE)
                else:
                    reader, writer = await asyncio.open_connection(
                        self.cfg.host, self.cfg.port, limit=_MAX_LINE
                    )
            except OSError as exc:
                self._set_connected(False, f"actor not reachable ({exc.strerror or exc})")
                await asyncio.sleep(self.retry_s)
                continue
            self._writer = writer
            beat = asyncio.create_task(self._heartbeat(writer))
            try:
                writer.write(_line({"type": "hello", "protocol": PROTOCOL, "client": "console"}))
                await writer.drain()
                self._set_connected(True, "connected")
                await self._read(reader)
                why = "actor closed the connection"
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                why = f"connection lost ({exc})"
            finally:
                beat.cancel()
                self._writer = None
                writer.close()
                self._fail_pending("connection to the actor lost")
            self._set_connected(False, why)
            if not self._closed:
                await asyncio.sleep(self.retry_s)

    def close(self) -> None:
        self._closed = True
        if self._writer is not None:
            self._writer.close()

    async def send(self, command: Command, timeout: float | None = None) -> Ack:
        """Send a command; resolves when the actor took it, or with ok=False (not connected/timeout)."""
        command = Command(command)
        writer = self._writer
        if writer is None:
            return Ack(command, False, "not connected to the actor")
        cid = next(self._ids)
        fut: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
        self._pending[cid] = (command, fut)
        try:
            writer.write(_line({"type": "command", "id": cid, "command": command.value}))
            await writer.drain()
            return await asyncio.wait_for(fut, timeout or self.cfg.ack_timeout_s)
        except TimeoutError:
            return Ack(
                command, False, f"actor did not take it within {timeout or self.cfg.ack_timeout_s:g} s"
            )
        except OSError as exc:
            return Ack(command, False, f"send failed ({exc})")
        finally:
            self._pending.pop(cid, None)

    async def next_status(self, timeout: float | None = None) -> ActorStatus:
        """Wait for the next status after this call (tests, scripts)."""
        self._new_status.clear()
        await asyncio.wait_for(self._new_status.wait(), timeout)
        assert self.latest is not None
        return self.latest

    def _set_connected(self, connected: bool, detail: str) -> None:
        changed = connected != self.connected
        self.connected = connected
        if self.on_connection is not None and (changed or not connected):
            self.on_connection(connected, detail)

    async def _heartbeat(self, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while True:
                await asyncio.sleep(self.cfg.heartbeat_s)
                writer.write(_line({"type": "heartbeat"}))
                await writer.drain()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while True:
            raw = await reader.readline()
            if not raw:
                return
            msg = json.loads(raw)
            kind = msg.get("type")
            if kind == "status":
                self.latest = ActorStatus.from_dict(msg["status"])
                self._new_status.set()
                if self.on_status is not None:
                    self.on_status(self.latest)
            elif kind == "ack":
                entry = self._pending.get(msg.get("id"))
                if entry is not None and not entry[1].done():
                    entry[1].set_result(Ack(entry[0], bool(msg.get("ok")), str(msg.get("detail", ""))))
            elif kind == "hello" and msg.get("protocol") != PROTOCOL:
                raise ValueError(f"actor speaks control protocol {msg.get('protocol')}, console {PROTOCOL}")

    def _fail_pending(self, why: str) -> None:
        for command, fut in self._pending.values():
            if not fut.done():
                fut.set_result(Ack(command, False, why))
