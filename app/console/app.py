"""ConsoleApp: the operator's one screen during real-robot training.

The app is a view plus a keyboard: it renders each `ActorStatus` the actor publishes and turns keys into
`Command`s. Every command goes out as soon as its key is pressed (in a worker, so a slow actor never
freezes the screen), and the log pane says whether the actor took it. E-stop is a priority binding: it
works in every screen, including the confirmation dialogs.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Footer

from app.console.launcher import ActorProcess
from app.console.widgets import (
    CameraPanel,
    ConfirmScreen,
    CurvesPanel,
    EpisodePanel,
    JointsPanel,
    LearnerLinkPanel,
    LogPane,
    LoopHealthPanel,
    StatusBar,
)
from app.console.widgets.panel import Panel
from app.control.client import ControlClient
from app.control.protocol import Ack, ActorStatus, Command, ControlConfig

STALE_STATUS_S = 2.0  # no status for this long while connected: the actor is flagged as silent

# Commands that throw work away, move the robot or end the run: asked about first.
CONFIRM = {
    Command.RERECORD: "Discard this episode and record it again?",
    Command.RESET: "Reset: the arm will move to its reset pose. Is the workspace clear?",
    Command.CLEAR_ESTOP: "Clear the e-stop latch? (the robot keeps holding until you start)",
    Command.QUIT: "Quit: stop the actor safely (the robot holds, then releases) and close the console?",
}


class ConsoleApp(App[int]):
    CSS_PATH = str(Path(__file__).with_name("console.tcss"))  # absolute: subclasses live elsewhere
    TITLE = "pirl console"
    VERTICAL_BREAKPOINTS = [(0, "-short"), (34, "-tall")]
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]
    ENABLE_COMMAND_PALETTE = False  # one screen, one job: no hidden command surface next to a robot
    BINDINGS = [
        Binding("space", "estop", "E-STOP", key_display="spc", priority=True),
        Binding("c", "ask('clear_estop')", "clear e-stop"),
        Binding("p", "start", "start"),
        Binding("p", "pause", "pause"),
        Binding("t", "takeover_on", "takeover"),
        Binding("t", "takeover_off", "hand back"),
        Binding("s", "send('success')", "success"),
        Binding("f", "send('failure')", "failure"),
        Binding("r", "ask('rerecord')", "re-record"),
        Binding("h", "ask('reset')", "reset"),
        Binding("q", "ask('quit')", "quit"),
        Binding("ctrl+q", "ask('quit')", "quit", show=False, priority=True),
    ]

    def __init__(self, control: ControlConfig | None = None, actor: ActorProcess | None = None) -> None:
        super().__init__()
        self.control = control
        self.actor = actor
        self.client: ControlClient | None = None
        self.status: ActorStatus | None = None
        self.connected = False
        self._link_detail = ""  # the link's last reason, so the log notes each new one once
        self.acks: list[Ack] = []  # every answer, newest last (tests and the log pane read it)
        self._last_status_at = 0.0
        self.quit_requested = False  # the operator confirmed quit (the actor was asked to stop)

    # -- layout

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status-bar")
        with Horizontal(id="row-robot"):
            yield JointsPanel(id="joints")
            yield CameraPanel(id="cameras")
        with Horizontal(id="row-run"):
            yield EpisodePanel(id="episode")
            yield LearnerLinkPanel(id="learner")
            yield LoopHealthPanel(id="loop")
        with Horizontal(id="row-history"):
            yield CurvesPanel(id="curves")
            yield LogPane(id="log")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(StatusBar).show(link="not connected")
        if self.control is not None:
            self.client = ControlClient(
                self.control, on_status=self._link_status, on_connection=self._link_state
            )
            self.run_worker(self.client.run(), name="control-link", group="link")
            self.set_interval(0.5, self._check_silence)

    def on_unmount(self) -> None:
        if self.client is not None:
            self.client.close()

    # -- what the actor says

    # The link's callbacks. On exit the app stops running and removes its panels before the link is
    # closed (on_unmount); a status arriving in between is dropped instead of failing the link's worker.
    def _link_status(self, status: ActorStatus) -> None:
        if self.is_running:
            self.show_status(status)

    def _link_state(self, connected: bool, detail: str) -> None:
        if self.is_running:
            self.show_link(connected, detail)

    def show_status(self, status: ActorStatus) -> None:
        """Render one status in every panel (called ~10 Hz by the control link, or directly)."""
        if self.status is not None and status.loop.steps < self.status.loop.steps:
            self.query_one(LogPane).actor_restarted()
        if self._binding_state(status) != self._binding_state(self.status):
            self.refresh_bindings()
        self.status = status
        self._last_status_at = time.monotonic()
        for panel in self.query(Panel):
            panel.show(status)
        self.query_one(LogPane).show(status)
        bar = self.query_one(StatusBar)
        bar.show(status, link="connected", link_ok=True) if self.connected else bar.show(status)

    @staticmethod
    def _binding_state(status: ActorStatus | None) -> tuple[bool, str, bool]:
        if status is None:
            return (False, "", False)
        return (status.estop, status.episode.state, status.episode.intervention)

    def show_link(self, connected: bool, detail: str) -> None:
        was, said = self.connected, self._link_detail
        self.connected, self._link_detail = connected, detail
        self.query_one(StatusBar).show(link=detail if not connected else "connected", link_ok=connected)
        # The log has room for the whole reason (e.g. which token file is missing); the top line may not.
        if connected != was or (not connected and detail != said):
            self.query_one(LogPane).note(f"actor link: {detail}", ok=connected)

    def _check_silence(self) -> None:
        if self.connected and self.status is not None:
            age = time.monotonic() - self._last_status_at
            if age > STALE_STATUS_S:
                self.query_one(StatusBar).show(link=f"SILENT for {age:.0f} s", link_ok=False)
        if self.actor is not None and not self.quit_requested and (rc := self.actor.poll()) is not None:
            self.query_one(StatusBar).show(
                link=f"actor EXITED (rc={rc}), see {self.actor.log_path}", link_ok=False
            )

    # -- commands

    async def send(self, command: Command) -> Ack:
        """Send one command and log the actor's answer; never raises."""
        log = self.query_one(LogPane)
        if self.client is None:
            ack = Ack(command, False, "no actor attached")
        else:
            ack = await self.client.send(command)
        self.acks.append(ack)
        if ack.ok:
            log.note(f"{command.value}: {ack.detail}")
        elif command is Command.ESTOP:
            log.note(f"E-STOP NOT DELIVERED ({ack.detail}); use the hardware stop", ok=False)
        else:
            log.note(f"{command.value} NOT TAKEN: {ack.detail}", ok=False)
        return ack

    def _dispatch(self, command: Command) -> None:
        self.run_worker(self.send(command), group="commands")

    def action_estop(self) -> None:
        self._dispatch(Command.ESTOP)

    def action_send(self, name: str) -> None:
        self._dispatch(Command(name))

    def action_start(self) -> None:
        self._dispatch(Command.START)

    def action_pause(self) -> None:
        self._dispatch(Command.PAUSE)

    def action_takeover_on(self) -> None:
        self._dispatch(Command.TAKEOVER_ON)

    def action_takeover_off(self) -> None:
        self._dispatch(Command.TAKEOVER_OFF)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Keys that share a letter (p: start/pause, t: takeover/hand back) show the one that applies;
        "clear e-stop" appears while the e-stop is latched, in place of start and takeover (the robot holds
        until the latch is cleared, so neither could act)."""
        st = self.status
        estop = st is not None and st.estop
        running = st is not None and st.episode.state == "running"
        resetting = st is not None and st.episode.state == "resetting"
        human = st is not None and st.episode.intervention
        if action == "start":
            return not running and not resetting and not estop
        if action == "pause":  # while resetting: start no episode after the reset
            return (running or resetting) and not estop
        if action == "takeover_on":
            return not human and not estop
        if action == "takeover_off":
            return human and not estop
        if action == "ask" and parameters == ("clear_estop",):
            return estop
        return True

    def action_ask(self, name: str) -> None:
        command = Command(name)
        if isinstance(self.screen, ConfirmScreen):
            return

        def answered(yes: bool | None) -> None:
            if not yes:
                self.query_one(LogPane).note(f"{command.value} cancelled")
            elif command is Command.QUIT:
                self.run_worker(self._quit_safely(), group="quit", exclusive=True)
            else:
                self._dispatch(command)

        self.push_screen(ConfirmScreen(CONFIRM[command]), answered)

    async def _quit_safely(self) -> None:
        """Safe quit: ask the actor to stop (it holds, then releases the robot), wait for it, then exit."""
        self.quit_requested = True
        if self.client is not None and self.connected:
            await self.send(Command.QUIT)
        if self.actor is not None:
            self.query_one(LogPane).note("waiting for the actor to shut down safely")
            rc = await asyncio.to_thread(self.actor.stop)
            self.query_one(LogPane).note(f"actor exited (rc={rc})")
        self.exit(0)
