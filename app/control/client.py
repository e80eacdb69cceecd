"""The console's end of the control channel: an asyncio client that connects, authenticates with the run's
token, reconnects and heartbeats (protocol: app/control/protocol.py)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from app.control import auth
from app.control.protocol import (
    MAX_LINE,
    PROTOCOL,
    Ack,
    ActorStatus,
    Command,
    ControlConfig,
    describe,
    encode_line,
)

log = logging.getLogger("pirl.control.client")

# -------------------------------------------------------------------------------------- console side


class ControlClient:
    """The console's end: connects (and reconnects) to the actor, heartbeats, streams statuses.

    `on_status(status)` and `on_connection(connected, detail)` are called from the event loop that runs
    `run()`, so a Textual app can update widgets in them directly. `connected` means authenticated: the
    actor takes this console's commands and sends it statuses. Connected to the port but without the token
    (file missing or unreadable), the client keeps the connection, re-reads the file every `retry_s` and
    reports why in `on_connection(False, ...)`; meanwhile only an e-stop is taken.
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
        self._refusal: str | None = None  # why the actor hung up on us, if it said

    async def run(self) -> None:
        """Connect, read until the actor goes away, retry; returns only after `close()`."""
        while not self._closed:
            try:
                if self.cfg.unix_socket:
                    reader, writer = await asyncio.open_unix_connection(self.cfg.unix_socket, limit=MAX_LINE)
                else:
                    reader, writer = await asyncio.open_connection(
                        self.cfg.host, self.cfg.port, limit=MAX_LINE
                    )
            except OSError as exc:
                self._set_connected(False, f"actor not reachable ({exc.strerror or exc})")
                await asyncio.sleep(self.retry_s)
                continue
            self._writer = writer
            self._refusal = None
            beat = asyncio.create_task(self._heartbeat(writer))
            hello = asyncio.create_task(self._authenticate(writer))
            try:
                await self._read(reader)
                why = self._refusal or "actor closed the connection"
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                why = self._refusal or f"connection lost ({exc})"
            finally:
                beat.cancel()
                hello.cancel()
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
            writer.write(encode_line({"type": "command", "id": cid, "command": command.value}))
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

    def token(self) -> tuple[str | None, str]:
        """(this run's token, "") from the token file, or (None, why not) for the operator."""
        path = self.cfg.token_path()
        try:
            return auth.read_token(path), ""
        except FileNotFoundError:
            why = f"{path} not found (is the actor running with this control port, as this user?)"
        except OSError as exc:
            why = f"{path} not readable ({exc.strerror or exc}); run the console as the actor's user"
        except ValueError:
            why = f"{path} is empty"
        return None, f"no token, e-stop only: {why}"

    async def _authenticate(self, writer: asyncio.StreamWriter) -> None:
        """Send the hello with the token, read afresh at every connect; retry while the file is missing."""
        with contextlib.suppress(OSError, ConnectionError):
            while True:
                token, why = self.token()
                if token is not None:
                    hello = {"type": "hello", "protocol": PROTOCOL, "client": "console", "token": token}
                    writer.write(encode_line(hello))
                    await writer.drain()
                    return
                self._set_connected(False, why)
                await asyncio.sleep(self.retry_s)

    async def _heartbeat(self, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while True:
                await asyncio.sleep(self.cfg.heartbeat_s)
                writer.write(encode_line({"type": "heartbeat"}))
                await writer.drain()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while True:
            raw = await reader.readline()
            if not raw:
                return
            # The actor's own replies (ack, auth, hello) are read by hand and leniently: a missing "ok" reads
            # as not ok, the safe reading; only the status, a big nested record, goes through pydantic.
            msg = json.loads(raw)
            kind = msg.get("type")
            if kind == "status":
                try:
                    self.latest = ActorStatus.from_dict(msg.get("status"))
                except ValidationError as err:  # a ValueError: the connection is dropped with this reason
                    raise ValueError(
                        f"the actor sent a status this console cannot read: {describe(err)}"
                    ) from err
                self._new_status.set()
                if self.on_status is not None:
                    self.on_status(self.latest)
            elif kind == "ack":
                entry = self._pending.get(msg.get("id"))
                if entry is not None and not entry[1].done():
                    entry[1].set_result(Ack(entry[0], bool(msg.get("ok")), str(msg.get("detail", ""))))
            elif kind == "auth":
                if msg.get("ok"):
                    self._set_connected(True, "connected")
                else:  # the actor hangs up next; say why
                    self._refusal = f"actor refused this console: {msg.get('detail', '')}"
            elif kind == "hello" and msg.get("protocol") != PROTOCOL:
                raise ValueError(f"actor speaks control protocol {msg.get('protocol')}, console {PROTOCOL}")

    def _fail_pending(self, why: str) -> None:
        for command, fut in self._pending.values():
            if not fut.done():
                fut.set_result(Ack(command, False, why))
