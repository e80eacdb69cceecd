"""The control channel over real loopback sockets: statuses out, commands in, consoles coming and going,
and only the console holding the run's token may command the arm (anyone may e-stop it)."""

from __future__ import annotations

import asyncio
import json
import math
import os
import socket
import stat
import time
from pathlib import Path

import numpy as np
import pytest

from app.actor.status import JointView
from app.control.auth import write_token
from app.control.client import ControlClient
from app.control.protocol import (
    PROTOCOL,
    ActorStatus,
    CameraThumbnail,
    Command,
    ControlConfig,
    JointStatus,
    LoopStatus,
    RecordStatus,
    encode_line,
    status_payload,
)
from app.control.server import ControlServer
from tests.app.console.sample import sample_frame, sample_status

FAST = {"heartbeat_s": 0.05, "console_timeout_s": 0.3, "rate_hz": 50.0}


async def wait_for(cond, timeout: float = 3.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@pytest.fixture
def server():
    srv = ControlServer(ControlConfig(port=0, **FAST)).start()
    yield srv
    srv.close()


def client_for(srv: ControlServer, **kw) -> ControlClient:
    return ControlClient(ControlConfig(port=srv.address[1], **FAST), retry_s=0.05, **kw)


def hello(srv: ControlServer, token: str | None = None) -> bytes:
    """A raw peer's hello, with the token read from the run's token file as the console reads it."""
    token = srv.token_path.read_text().strip() if token is None else token
    return encode_line({"type": "hello", "protocol": PROTOCOL, "client": "test", "token": token})


async def read_until(reader: asyncio.StreamReader, kind: str, timeout: float = 3.0) -> dict:
    while True:
        msg = json.loads(await asyncio.wait_for(reader.readline(), timeout))
        if msg.get("type") == kind:
            return msg


async def command(reader, writer, cid: int, cmd: Command) -> dict:
    writer.write(encode_line({"type": "command", "id": cid, "command": cmd.value}))
    await writer.drain()
    return await read_until(reader, "ack")


async def test_status_round_trip_keeps_every_field(server):
    client = client_for(server)
    task = asyncio.create_task(client.run())
    await wait_for(lambda: server.clients == 1, what="connect")
    sent = sample_status()
    assert server.publish(sent)
    got = await client.next_status(3)
    assert got == sent
    assert np.array_equal(got.cameras["front"].to_array(), sent.cameras["front"].to_array())
    client.close()
    await task


def test_the_recording_section_survives_the_wire_and_an_older_actor_reads_as_not_recording():
    """`record` came within protocol 2: encoded and decoded as the channel does it, its fields arrive as
    sent; a status from an actor that predates it (no "record" key) decodes with the defaults, and a
    newer actor's extra keys in it are ignored."""
    sent = sample_status()
    sent.record = RecordStatus(root="outputs/run/episodes", episodes=12, error="OSError: disk full")
    line = encode_line({"type": "status", "status": status_payload(sent)})
    got = ActorStatus.from_dict(json.loads(line)["status"])
    assert got.record == RecordStatus("outputs/run/episodes", 12, "OSError: disk full") and got == sent
    older = status_payload(sample_status())
    del older["record"]
    assert ActorStatus.from_dict(older).record == RecordStatus(root="", episodes=0, error="")
    newer = status_payload(sent)
    newer["record"]["frames"] = 3600
    assert ActorStatus.from_dict(newer).record == sent.record


async def test_non_finite_numbers_arrive_as_unknown(server):
    client = client_for(server)
    task = asyncio.create_task(client.run())
    await wait_for(lambda: server.clients == 1, what="connect")
    server.publish(
        ActorStatus(
            loop=LoopStatus(inference_ms=math.nan, hz=math.inf),
            joints=[JointStatus("a", math.nan, math.inf, 0, 2)],
        )
    )
    got = await client.next_status(3)
    assert got.loop.inference_ms is None and got.joints[0].commanded is None  # optional: unknown is None
    assert math.isnan(got.loop.hz) and math.isnan(got.joints[0].present)  # measured: a float, NaN
    assert got.joints[0].upper == 2.0 and isinstance(got.joints[0].upper, float)
    client.close()
    await task


async def test_a_status_the_console_cannot_read_drops_the_connection_and_says_why(tmp_path):
    """An actor (here a stand-in) whose status does not fit this console's protocol: the console reports
    pydantic's reason on one line and reconnects; it never shows a half-read status."""
    reasons: list[tuple[bool, str]] = []

    async def actor(reader, writer):
        writer.write(encode_line({"type": "hello", "protocol": PROTOCOL}))
        writer.write(encode_line({"type": "auth", "ok": True}))
        writer.write(encode_line({"type": "status", "status": {"robot": "r", "loop": {"hz": "fast"}}}))
        await writer.drain()
        await reader.read()
        writer.close()

    fake = await asyncio.start_server(actor, "127.0.0.1", 0)
    token = tmp_path / "token"
    write_token(token, "secret")
    cfg = ControlConfig(port=fake.sockets[0].getsockname()[1], token_file=str(token), **FAST)
    client = ControlClient(cfg, on_connection=lambda ok, why: reasons.append((ok, why)), retry_s=0.05)
    task = asyncio.create_task(client.run())
    await wait_for(lambda: sum(not ok and "cannot read" in why for ok, why in reasons) >= 2, what="reconnect")
    why = next(why for ok, why in reasons if "cannot read" in why)
    assert "loop.hz: Input should be a valid number" in why and "(got 'fast')" in why and "\n" not in why
    assert client.latest is None and (True, "connected") in reasons
    client.close()
    await task
    fake.close()
    await fake.wait_closed()


async def test_command_is_acknowledged_when_the_actor_loop_takes_it(server):
    client = client_for(server)
    task = asyncio.create_task(client.run())
    await wait_for(lambda: client.connected, what="connect")
    pending = asyncio.create_task(client.send(Command.SUCCESS, timeout=3))
    await asyncio.sleep(0.2)
    assert not pending.done(), "ack must wait for poll_commands, not for the network"
    assert server.poll_commands() == [Command.SUCCESS]
    ack = await pending
    assert ack.ok and ack.command is Command.SUCCESS
    # nobody polls: the console hears "not taken" instead of hanging
    ack = await client.send(Command.START, timeout=0.2)
    assert not ack.ok and "did not take" in ack.detail
    client.close()
    await task


async def test_estop_reaches_the_handler_before_the_loop_polls(server):
    latched = []
    server.on_estop = lambda: latched.append(time.monotonic())
    client = client_for(server)
    task = asyncio.create_task(client.run())
    await wait_for(lambda: client.connected, what="connect")
    send = asyncio.create_task(client.send(Command.ESTOP, timeout=2))
    await wait_for(lambda: latched, what="on_estop")
    assert server.poll_commands() == [Command.ESTOP]  # still queued for the loop, too
    assert (await send).ok
    client.close()
    await task


async def test_unknown_and_malformed_messages_are_refused_without_dropping_the_console(server):
    host, port = server.address
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(hello(server))
    assert (await read_until(reader, "auth"))["ok"] is True
    writer.write(b"this is not json\n")
    writer.write(b'{"type": "command", "id": 1, "command": "self_destruct"}\n')
    await writer.drain()
    msgs = []
    while not any(m.get("type") == "ack" for m in msgs):
        msgs.append(json.loads(await asyncio.wait_for(reader.readline(), 3)))
    ack = next(m for m in msgs if m["type"] == "ack")
    assert ack["id"] == 1 and ack["ok"] is False and "'start', 'pause'" in ack["detail"]
    assert "(got 'self_destruct')" in ack["detail"]
    assert server.poll_commands() == []
    writer.write(b'{"type": "command", "id": 2, "command": "pause"}\n')
    await writer.drain()
    await wait_for(lambda: server._commands, what="second command")
    assert server.poll_commands() == [Command.PAUSE]
    writer.close()


@pytest.mark.parametrize(
    ("message", "detail"),
    [
        ({"type": "command", "id": 3, "command": 5}, "malformed command: command: Input should be 'start'"),
        ({"type": "command", "id": "3", "command": "pause"}, "id: Input should be a valid integer (got '3')"),
        ({"type": "command", "id": 3}, "malformed command: command: Field required"),
        ({"type": "command", "id": 3, "command": "self_destruct"}, "(got 'self_destruct')"),
    ],
    ids=["wrong type", "wrong id type", "missing field", "unknown command"],
)
async def test_a_malformed_command_is_refused_with_pydantics_reason_and_the_server_carries_on(
    server, message, detail
):
    """Refused in its ack (ok=false, the id as sent, one line saying which field and why), nothing queued
    for the loop; the same connection's next good command is taken, and other consoles are unaffected."""
    latched = []
    server.on_estop = lambda: latched.append(1)
    client = client_for(server)
    task = asyncio.create_task(client.run())
    await wait_for(lambda: client.connected, what="connect")
    reader, writer = await asyncio.open_connection(*server.address)
    writer.write(hello(server))
    assert (await read_until(reader, "auth"))["ok"] is True
    writer.write(encode_line(message))
    await writer.drain()
    ack = await read_until(reader, "ack")
    assert ack["ok"] is False and ack["id"] == message["id"] and detail in ack["detail"], ack
    assert "\n" not in ack["detail"] and server.poll_commands() == [] and not latched
    assert server._thread.is_alive() and server.connections == 2
    writer.write(encode_line({"type": "command", "id": 4, "command": "pause"}))
    await writer.drain()
    await wait_for(lambda: server._commands, what="the next good command")
    assert server.poll_commands() == [Command.PAUSE]
    assert (await read_until(reader, "ack")) == {
        "type": "ack",
        "id": 4,
        "ok": True,
        "detail": "taken by the actor",
    }
    pending = asyncio.create_task(client.send(Command.ESTOP, timeout=3))
    await wait_for(lambda: latched, what="e-stop from the other console")
    assert server.poll_commands() == [Command.ESTOP] and (await pending).ok
    writer.close()
    client.close()
    await task


async def test_a_malformed_hello_is_refused_and_other_junk_is_ignored(server, caplog):
    """A hello of the right version but the wrong shape is refused like a wrong token (the actor says why
    and hangs up); lines that are not messages, or of unknown type, are logged and ignored."""
    host, port = server.address
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(encode_line({"type": "hello", "protocol": PROTOCOL, "token": 12345}))
    await writer.drain()
    refusal = await read_until(reader, "auth")
    assert refusal["ok"] is False and refusal["detail"].startswith("malformed hello: token: Input should be")
    assert await asyncio.wait_for(reader.read(), 3) == b""  # hung up
    writer.close()
    reader, writer = await asyncio.open_connection(host, port)
    for junk in (b"[1, 2]", b'"type"', b'{"type": ["command"]}', b'{"type": "reboot"}', b"{"):
        writer.write(junk + b"\n")
    writer.write(hello(server))
    await writer.drain()
    assert (await read_until(reader, "auth"))["ok"] is True  # the same connection, still served
    assert server.clients == 1 and server._thread.is_alive()
    warned = [r.getMessage() for r in caplog.records if r.name == "pirl.control.server"]
    assert (
        sum("malformed line" in w for w in warned) == 3
        and sum("unknown message type" in w for w in warned) == 2
    )
    writer.close()


async def test_frozen_console_never_blocks_publish_and_gets_only_the_latest(server):
    frozen = socket.create_connection(server.address)  # connects, authenticates, then never reads
    frozen.sendall(hello(server))
    await wait_for(lambda: server.clients == 1, what="connect")
    status = sample_status()
    t0 = time.perf_counter()
    n = 0
    while time.perf_counter() - t0 < 0.5:
        server.publish(status, force=True)
        n += 1
    per_call_ms = (time.perf_counter() - t0) / n * 1e3
    assert n > 100 and per_call_ms < 5.0
    peer = next(iter(server._peers.values()))
    assert len(peer.out) <= 2 * len(json.dumps(status.to_dict())) + 1024  # one status in flight, at most
    # a live console connecting now still gets fresh statuses
    client = client_for(server)
    task = asyncio.create_task(client.run())
    await wait_for(lambda: client.connected, what="connect")
    server.publish(ActorStatus(robot="fresh"), force=True)
    assert (await client.next_status(3)).robot == "fresh"
    frozen.close()
    client.close()
    await task


@pytest.mark.timing  # heartbeat timing: run alone
async def test_heartbeat_tells_the_actor_whether_a_console_is_alive():
    # heartbeats every 0.05 s against a 1 s timeout: a loaded CI machine's scheduling gaps stay well inside
    timing = {**FAST, "console_timeout_s": 1.0}
    server = ControlServer(ControlConfig(port=0, **timing)).start()
    try:
        assert not server.console_alive and not server.status_due()
        client = ControlClient(ControlConfig(port=server.address[1], **timing), retry_s=0.05)
        task = asyncio.create_task(client.run())
        await wait_for(lambda: server.console_alive, what="heartbeat")
        await asyncio.sleep(1.5)  # longer than console_timeout_s: heartbeats keep it alive
        assert server.console_alive
        client.close()
        await task
        await wait_for(lambda: not server.console_alive, what="console gone")
    finally:
        server.close()


async def test_console_reconnects_to_a_restarted_actor():
    first = ControlServer(ControlConfig(port=0, **FAST)).start()
    port = first.address[1]
    links = []
    client = ControlClient(
        ControlConfig(port=port, **FAST), retry_s=0.05, on_connection=lambda ok, d: links.append(ok)
    )
    task = asyncio.create_task(client.run())
    await wait_for(lambda: client.connected, what="first connect")
    first.close()
    await wait_for(lambda: not client.connected, what="disconnect")
    assert (await client.send(Command.START)).ok is False
    second = ControlServer(ControlConfig(port=port, **FAST)).start()
    await wait_for(lambda: client.connected, what="reconnect")
    second.publish(ActorStatus(robot="second"), force=True)
    assert (await client.next_status(3)).robot == "second"
    assert links[:2] == [True, False] and links[-1] is True
    client.close()
    await task
    second.close()


async def test_unix_socket(tmp_path):
    path = str(tmp_path / "actor.sock")
    srv = ControlServer(ControlConfig(unix_socket=path, **FAST)).start()
    client = ControlClient(ControlConfig(unix_socket=path, **FAST), retry_s=0.05)
    task = asyncio.create_task(client.run())
    await wait_for(lambda: client.connected, what="connect")
    srv.publish(ActorStatus(robot="unix"), force=True)
    assert (await client.next_status(3)).robot == "unix"
    assert str(srv.token_path) == path + ".token" and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    client.close()
    await task
    srv.close()
    assert not os.path.exists(path) and not os.path.exists(path + ".token")


# ------------------------------------------------------------------------ who may command the arm


async def test_without_the_token_a_peer_may_estop_but_not_clear_it_start_or_watch(server):
    latched = []
    server.on_estop = lambda: latched.append(True)
    reader, writer = await asyncio.open_connection(*server.address)  # any local process, no hello
    assert (await read_until(reader, "hello"))["protocol"] == PROTOCOL
    await wait_for(lambda: server.connections == 1, what="connect")
    assert server.clients == 0 and not server.console_alive and not server.status_due()
    refused = [Command.CLEAR_ESTOP, Command.START, Command.TAKEOVER_ON, Command.RESET, Command.QUIT]
    for cid, cmd in enumerate(refused, 1):
        ack = await command(reader, writer, cid, cmd)
        assert ack["id"] == cid and ack["ok"] is False, ack
        assert ack["detail"].startswith("not authenticated") and str(server.token_path) in ack["detail"]
    assert server.poll_commands() == [] and not latched and server.commands_received == 0
    # an e-stop only makes the robot safer: taken from anyone, latched at once
    writer.write(encode_line({"type": "command", "id": 9, "command": "estop"}))
    await writer.drain()
    await wait_for(lambda: latched, what="on_estop")
    assert server.poll_commands() == [Command.ESTOP]
    assert (await read_until(reader, "ack")) == {
        "type": "ack",
        "id": 9,
        "ok": True,
        "detail": "taken by the actor",
    }
    # statuses (camera frames included) go to the console that holds the token, not to this peer
    console = client_for(server)
    task = asyncio.create_task(console.run())
    await wait_for(lambda: server.clients == 1, what="the console")
    server.publish(ActorStatus(robot="secret"), force=True)
    assert (await console.next_status(3)).robot == "secret"
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.readline(), 0.3)
    assert server.connections == 2 and server.clients == 1
    console.close()
    await task
    writer.close()


@pytest.mark.parametrize(
    ("token", "protocol", "why"),
    [("not-the-token", PROTOCOL, "wrong token"), ("", PROTOCOL, "no token"), (None, 1, "protocol 1")],
)
async def test_a_hello_without_the_right_token_is_refused_and_the_actor_hangs_up(
    server, token, protocol, why
):
    latched = []
    server.on_estop = lambda: latched.append(True)
    reader, writer = await asyncio.open_connection(*server.address)
    msg = {"type": "hello", "protocol": protocol, "client": "console"}
    msg["token"] = server.token_path.read_text().strip() if token is None else token
    writer.write(encode_line(msg) + encode_line({"type": "command", "id": 1, "command": "clear_estop"}))
    await writer.drain()
    answer = await read_until(reader, "auth")
    assert answer["ok"] is False and why in answer["detail"], answer
    if token is not None:
        assert str(server.token_path) in answer["detail"]
    assert await asyncio.wait_for(reader.read(), 3) == b""  # hung up; the command behind it never ran
    await wait_for(lambda: server.connections == 0, what="drop")
    assert server.poll_commands() == [] and server.clients == 0 and not latched
    writer.close()


async def test_the_console_reads_the_token_at_every_connect_and_says_what_is_wrong(server, tmp_path):
    """The real client: a missing token file (e-stop still works), then a wrong token (refused, retried),
    then the right one (connected). The actor's own token file is untouched throughout."""
    links: list[tuple[bool, str]] = []
    path = tmp_path / "console.token"
    client = ControlClient(
        ControlConfig(port=server.address[1], token_file=str(path), **FAST),
        retry_s=0.05,
        on_connection=lambda ok, detail: links.append((ok, detail)),
    )
    task = asyncio.create_task(client.run())
    await wait_for(lambda: any("not found" in d for _, d in links), what="missing token reported")
    ok, detail = links[-1]
    assert not ok and detail.startswith("no token, e-stop only: ") and str(path) in detail
    assert server.connections == 1 and server.clients == 0 and not client.connected
    ack = await client.send(Command.CLEAR_ESTOP, timeout=3)
    assert not ack.ok and ack.detail.startswith("not authenticated"), ack
    estop = asyncio.create_task(client.send(Command.ESTOP, timeout=3))
    await wait_for(lambda: server._commands, what="e-stop queued")
    assert server.poll_commands() == [Command.ESTOP]
    assert (await estop).ok

    write_token(path, "stale-token-of-an-earlier-run")
    await wait_for(lambda: any("refused" in d for _, d in links), what="refusal reported")
    assert "actor refused this console: wrong token" in links[-1][1]
    assert not client.connected

    write_token(path, server.token_path.read_text().strip())
    await wait_for(lambda: client.connected, what="authenticated")
    assert links[-1] == (True, "connected") and server.clients == 1
    server.publish(ActorStatus(robot="mine"), force=True)
    assert (await client.next_status(3)).robot == "mine"
    client.close()
    await task


def test_the_token_file_is_private_fresh_per_run_and_removed_on_close():
    first = ControlServer(ControlConfig(port=0, **FAST)).start()
    second = ControlServer(ControlConfig(port=0, **FAST)).start()
    try:
        for srv in (first, second):
            path = srv.token_path
            assert (
                path
                == Path(os.environ["XDG_RUNTIME_DIR"]) / "pirl" / f"control-127.0.0.1-{srv.address[1]}.token"
            )
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
            assert len(path.read_text().strip()) >= 40  # 32 random bytes
        assert first.token_path.read_text() != second.token_path.read_text()
        assert sorted(p.name for p in first.token_path.parent.iterdir()) == sorted(
            [first.token_path.name, second.token_path.name]
        )  # no temp file left behind
    finally:
        first.close()
        second.close()
    assert not first.token_path.exists() and not second.token_path.exists()


def test_a_restarted_actor_gets_a_new_token_and_close_leaves_anothers_file_alone(tmp_path):
    path = tmp_path / "private" / "actor.token"
    cfg = ControlConfig(port=0, token_file=str(path))
    with ControlServer(cfg) as srv:
        old = path.read_text()
    assert not path.exists()
    srv = ControlServer(cfg).start()
    assert path.read_text() != old and stat.S_IMODE(path.stat().st_mode) == 0o600
    write_token(path, "written-by-another-actor")  # e.g. a second actor configured with the same file
    srv.close()
    assert path.read_text().strip() == "written-by-another-actor"


def test_where_the_token_file_is(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert ControlConfig(port=7070).token_path() == tmp_path / ".cache/pirl/control-127.0.0.1-7070.token"
    assert (
        ControlConfig(host="localhost", port=0).token_path(port=7071).name == "control-127.0.0.1-7071.token"
    )
    assert ControlConfig(host="::1").token_path().name == "control-__1-7070.token"
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert str(ControlConfig().token_path()) == "/run/user/1000/pirl/control-127.0.0.1-7070.token"
    assert str(ControlConfig(unix_socket="/tmp/a.sock").token_path()) == "/tmp/a.sock.token"
    assert str(ControlConfig(unix_socket="/tmp/a.sock", token_file="~/t").token_path()) == f"{tmp_path}/t"


def test_only_loopback_is_accepted():
    with pytest.raises(ValueError, match="not a loopback address.*ssh -L"):
        ControlConfig(host="0.0.0.0").validate()
    ControlConfig(host="::1").validate()
    ControlConfig(host="localhost").validate()


def test_busy_port_says_what_to_do(server):
    with pytest.raises(OSError, match="another actor may be running"):
        ControlServer(ControlConfig(port=server.address[1])).start()


def test_thumbnail_keeps_aspect_and_colours():
    frame = sample_frame(480, 640)
    thumb = CameraThumbnail.from_array(frame, max_width=64, max_height=48)
    assert (thumb.width, thumb.height) == (64, 48)
    small = thumb.to_array()
    assert small[32, 21].tolist() == [220, 30, 30]  # the red cube survives block averaging
    with pytest.raises(ValueError, match="HxWx3"):
        CameraThumbnail.from_array(np.zeros((4, 4)))


def test_joint_view_flags_clamps_since_the_previous_status():
    view = JointView()
    limits = {"elbow_flex": (-90.0, 90.0), "gripper": (0.0, 100.0)}
    present = {"elbow_flex.pos": 80.0, "gripper.pos": 10.0}
    commanded = {"elbow_flex.pos": 90.0, "gripper.pos": 10.0}
    first = view(present, commanded, limits, {"joint_limit:elbow_flex": 2, "workspace": 1})
    assert [(j.name, j.clamped, j.clamp_count) for j in first] == [
        ("elbow_flex", True, 2),
        ("gripper", False, 0),
    ]
    again = view(present, commanded, limits, {"joint_limit:elbow_flex": 2})
    assert not again[0].clamped and again[0].clamp_count == 2
    new_episode = view(present, commanded, limits, {"max_step:gripper": 1})
    assert [j.clamped for j in new_episode] == [False, True]
