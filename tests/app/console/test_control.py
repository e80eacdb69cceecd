"""The control channel over real loopback sockets: statuses out, commands in, consoles coming and going."""

from __future__ import annotations

import asyncio
import json
import math
import socket
import time

import numpy as np
import pytest

from app.actor.status import JointView
from app.control.client import ControlClient
from app.control.protocol import ActorStatus, CameraThumbnail, Command, ControlConfig, JointStatus, LoopStatus
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


async def test_non_finite_numbers_arrive_as_unknown(server):
    client = client_for(server)
    task = asyncio.create_task(client.run())
    await wait_for(lambda: server.clients == 1, what="connect")
    server.publish(
        ActorStatus(loop=LoopStatus(inference_ms=math.nan), joints=[JointStatus("a", 1.0, math.inf, 0, 2)])
    )
    got = await client.next_status(3)
    assert got.loop.inference_ms is None and got.joints[0].commanded is None
    client.close()
    await task


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
    writer.write(b"this is not json\n")
    writer.write(b'{"type": "command", "id": 1, "command": "self_destruct"}\n')
    await writer.drain()
    msgs = []
    while not any(m.get("type") == "ack" for m in msgs):
        msgs.append(json.loads(await asyncio.wait_for(reader.readline(), 3)))
    ack = next(m for m in msgs if m["type"] == "ack")
    assert ack["id"] == 1 and ack["ok"] is False and "valid: start" in ack["detail"]
    assert server.poll_commands() == []
    writer.write(b'{"type": "command", "id": 2, "command": "pause"}\n')
    await writer.drain()
    await wait_for(lambda: server._commands, what="second command")
    assert server.poll_commands() == [Command.PAUSE]
    writer.close()


async def test_frozen_console_never_blocks_publish_and_gets_only_the_latest(server):
    frozen = socket.create_connection(server.address)  # connects, then never reads
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


async def test_heartbeat_tells_the_actor_whether_a_console_is_alive(server):
    assert not server.console_alive and not server.status_due()
    client = client_for(server)
    task = asyncio.create_task(client.run())
    await wait_for(lambda: server.console_alive, what="heartbeat")
    await asyncio.sleep(0.5)  # longer than console_timeout_s: heartbeats keep it alive
    assert server.console_alive
    client.close()
    await task
    await wait_for(lambda: not server.console_alive, what="console gone")


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
    client.close()
    await task
    srv.close()


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
