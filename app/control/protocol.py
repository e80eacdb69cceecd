"""The console <-> actor control channel: status out, operator commands in, JSON lines over loopback.

The operator console observes the actor and sends it commands; it owns no robot logic. This module is the
whole contract between the two processes, so either can be restarted, frozen or killed without the other
noticing anything but silence. The actor keeps the robot safe on its own: nothing here is needed for
safety, and no call on the actor side ever blocks the control loop.

Actor side (all calls are non-blocking; the loop never waits for a console)::

    from app.control.protocol import ActorStatus, Command, ControlConfig
    from app.control.server import ControlServer

    server = ControlServer(ControlConfig(port=7070))       # or ControlConfig(unix_socket="/tmp/pirl.sock")
    server.on_estop = guard.estop                           # optional: latch at once, from the I/O thread
    server.start()                                          # also writes this run's token (server.token_path)
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
    task = asyncio.create_task(client.run())                # connects, authenticates, reconnects, heartbeats
    ack = await client.send(Command.ESTOP)                  # Ack(ok, detail); ok=False on timeout

Wire format: one UTF-8 JSON object per line (never pickle, so a console cannot run code in the actor).

    console -> actor   {"type": "hello", "protocol": 2, "client": "console", "token": "..."}
                       {"type": "heartbeat"}                                  every heartbeat_s
                       {"type": "command", "id": 7, "command": "estop"}
    actor -> console   {"type": "hello", "protocol": 2}                       on connect
                       {"type": "auth", "ok": true}                           after a hello with the token
                       {"type": "auth", "ok": false, "detail": "..."}         wrong token: then it hangs up
                       {"type": "status", "status": {...ActorStatus...}}      at most rate_hz
                       {"type": "ack", "id": 7, "ok": true, "detail": "..."}

Who may command the arm: the actor writes a fresh random token for every run to a file only its user can
read (`ControlConfig.token_path`, app/control/auth.py), and the console presents it in its hello. A peer
without it (any local process that can reach the port) may send ESTOP, which only makes the robot safer,
and nothing else: every other command gets ok=false "not authenticated", and it gets no statuses. It does
not count as a console for `console_alive` either. A hello with a wrong token is refused and the actor
hangs up.

What a console sends is validated with pydantic (`Hello`, `Heartbeat`, `CommandMessage`). A line that is
not a JSON object with a "type", or has an unknown type, is logged and ignored; a command that does not
validate (unknown command, a field missing or of the wrong type) gets `ack` ok=false with pydantic's
errors on one line as its detail; a hello that does not validate is refused like a wrong token. Nothing a
peer sends stops the actor's I/O thread.

A command is acknowledged when the actor loop takes it (`poll_commands`), so an ack means "the actor has
it", not "the network has it"; a stalled actor shows up on the console as a missing ack. E-stop is also
handed to `on_estop` straight from the I/O thread, so it latches even while the loop is busy. Statuses
are latest-only per console: a slow or frozen console skips statuses, it never queues them, and the actor
never buffers more than one status per console.
"""

from __future__ import annotations

import base64
import enum
import ipaddress
import json
import logging
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
)

log = logging.getLogger("pirl.actor.control")

# 2: the console authenticates with the run's token (1 had no authentication). Status sections added
# since (`ActorStatus.record`) have defaults and decoding is tolerant, so they did not change the version:
# an older console ignores them and a newer console reads an older actor's status with them defaulted.
PROTOCOL = 2
MAX_LINE = 1 << 20  # a status with camera thumbnails is ~20 KB; anything near 1 MiB is garbage


# --------------------------------------------------------------------------------------------- config


@dataclass
class ControlConfig:
    # Loopback address the actor listens on and the console connects to. Only loopback is accepted: the
    # channel can stop and start a robot, so a remote console goes through `ssh -L`, never an open port.
    host: str = "127.0.0.1"
    # TCP port (0 on the actor binds a free one; read it back from `ControlServer.address`).
    port: int = 7070
    # Unix socket path; when set it replaces host/port (mode 0600, and the token below as well).
    unix_socket: str | None = None
    # File with this run's secret token: the actor writes it (mode 0600) when it starts listening, the
    # console reads it, and only a console holding it may command the arm (anyone may e-stop). Default:
    # `<unix_socket>.token`, else `${XDG_RUNTIME_DIR:-~/.cache}/pirl/control-<host>-<port>.token`.
    token_file: str | None = None
    # Most statuses per second sent to each console (the actor may publish more often; extras are dropped).
    rate_hz: float = 10.0
    # Seconds between console heartbeats.
    heartbeat_s: float = 0.5
    # The actor counts the console as gone after this long without any message from it.
    console_timeout_s: float = 2.0
    # The console waits this long for the actor to take a command before reporting it as not taken.
    ack_timeout_s: float = 2.0

    def token_path(self, port: int | None = None) -> Path:
        """Where the actor writes this run's token and the console reads it. `port`: the port actually
        bound (an actor with port=0 names the real one, which is the one its console is given)."""
        if self.token_file:
            return Path(self.token_file).expanduser()
        if self.unix_socket:
            return Path(self.unix_socket + ".token")
        base = os.environ.get("XDG_RUNTIME_DIR") or os.path.join(os.path.expanduser("~"), ".cache")
        host = "127.0.0.1" if self.host == "localhost" else str(ipaddress.ip_address(self.host))
        name = f"control-{host.replace(':', '_')}-{self.port if port is None else port}.token"
        return Path(base) / "pirl" / name

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


def _nan_for_null(value: Any) -> Any:
    return math.nan if value is None else value


# A float the actor measured. JSON has no NaN, so an unknown one travels as null (`status_payload`); the
# console reads it back as NaN, still a float a widget can format, rather than refusing the whole status.
Measured = Annotated[float, BeforeValidator(_nan_for_null)]


@dataclass
class JointStatus:
    name: str
    present: Measured  # measured position (deg; gripper 0..100)
    commanded: float | None  # last target sent to the robot after safety; None before the first
    lower: Measured  # safety limits in force
    upper: Measured
    clamped: bool = False  # the safety layer changed this joint's command since the previous status
    clamp_count: int = 0  # ... and how often in this episode


@dataclass
class EpisodeStatus:
    number: int = 0  # from 1, as in the actor's progress lines (a re-recorded episode keeps its number)
    state: str = "idle"  # idle | running | paused | resetting | holding | done | stopped
    time_left_s: float | None = None
    length_s: float | None = None  # time limit of an episode
    reward: Measured = 0.0  # return so far
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
    # Why the link is down, or why the newest weights push was refused (kept until good weights load).
    error: str = ""
    weights_refused: int = 0  # weight pushes refused since the actor started


@dataclass
class LoopStatus:
    hz: Measured = 0.0  # measured control rate
    target_hz: Measured = 0.0  # 0: no wall-clock target (a lockstep simulator steps as fast as it can)
    inference_ms: float | None = None  # policy time per chunk or step, recent mean
    dropped_steps: int = 0  # steps that missed their deadline
    steps: int = 0
    # Robot time this actor has spent on training episodes and resets ((env steps + reset motion steps)
    # / control rate, evaluation excluded), and the part of it a human drove (intervened steps / rate).
    robot_minutes: Measured = 0.0
    human_minutes: Measured = 0.0


@dataclass
class RecordStatus:
    """The actor's LeRobotDataset recording (`--actor.record.root`). Added within protocol 2: every field
    has a default, so an actor that predates it reads as "not recording"."""

    root: str = ""  # dataset folder the episodes go to; "" when the actor records nothing
    episodes: int = 0  # episodes this actor saved to it so far (re-recorded ones are left out)
    error: str = ""  # why the recording stopped (the run goes on); "" while it records


@dataclass
class EpisodeRecord:
    """One finished episode, for the learning curves."""

    number: int
    success: bool | None
    episode_return: Measured
    interventions: int = 0
    intervention_rate: Measured = 0.0  # fraction of steps a human drove
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
    record: RecordStatus = field(default_factory=RecordStatus)  # the episodes as a LeRobot dataset
    history: list[EpisodeRecord] = field(default_factory=list)  # recent finished episodes, oldest first
    log: list[LogLine] = field(default_factory=list)  # recent log lines, oldest first
    cameras: dict[str, CameraThumbnail] = field(default_factory=dict)  # only cameras that exist

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ActorStatus:
        """Tolerant where versions differ: unknown keys are ignored and missing ones take defaults, so an
        older console still reads a newer actor's status; null in a measured float reads as NaN. A value
        of the wrong type raises pydantic's ValidationError (a ValueError)."""
        return _STATUS.validate_python(data)


_STATUS = TypeAdapter(ActorStatus)  # pydantic over the dataclasses above: they stay what the actor builds


# ------------------------------------------------------------------------------ console -> actor messages


class _Message(BaseModel):
    # extra="ignore": a newer console may add fields; ids, versions and tokens are strict (no "7" -> 7)
    model_config = ConfigDict(extra="ignore", frozen=True)


class Hello(_Message):
    type: Literal["hello"]
    protocol: StrictInt
    client: StrictStr = ""
    token: StrictStr | None = None


class Heartbeat(_Message):
    type: Literal["heartbeat"]


class CommandMessage(_Message):
    type: Literal["command"]
    id: StrictInt | None = None  # echoed in the ack
    command: Command


# What a console may send, by its "type". The server reads "type" (and a hello's "protocol") from the raw
# object itself before validating: the version must be checked before the rest of a hello is trusted to
# have this version's shape, and an unknown type is ignored (logged), not refused like a bad command.
CONSOLE_MESSAGES: dict[str, type[_Message]] = {
    "hello": Hello,
    "heartbeat": Heartbeat,
    "command": CommandMessage,
}


def describe(err: ValidationError) -> str:
    """pydantic's errors on one line: `command: Input should be 'start', ... or 'quit' (got 'fly')`."""
    parts = []
    for e in err.errors(include_url=False):
        where = ".".join(str(x) for x in e["loc"]) or "message"
        got = "" if e["type"] == "missing" else f" (got {_short(e['input'])})"
        parts.append(f"{where}: {e['msg']}{got}")
    return "; ".join(parts)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# Encoding stays json.dumps by hand, not pydantic's dump: the wire must stay byte-identical (json.dumps
# escapes non-ASCII and prints floats its own way) and a status is encoded at ~10 Hz from plain dataclasses.
def encode_line(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, separators=(",", ":"), allow_nan=False) + "\n").encode()


def status_payload(status: ActorStatus) -> dict[str, Any]:
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
