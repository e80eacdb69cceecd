"""ConsoleApp: the operator's one screen during real-robot training.

The app is a view plus a keyboard: it renders each `ActorStatus` the actor publishes and turns keys into
`Command`s. Every command goes out as soon as its key is pressed (in a worker, so a slow actor never
freezes the screen), and the log pane says whether the actor took it. E-stop is a priority binding: it
works in every screen, including the dialogs. Until the console is connected to the actor (and holds the
run's token), and after a started actor has exited, only the e-stop, help and quit keys are offered.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.css.query import NoMatches
from textual.widgets import Footer

from app.console.launcher import ActorProcess
from app.console.widgets import (
    ActorExitedScreen,
    CameraPanel,
    ConfirmScreen,
    CurvesPanel,
    EpisodePanel,
    HelpScreen,
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
ESTOP_PENDING_S = 3.0  # an e-stop sent but not yet seen latched in a status is shown as "sent" this long
EXIT_TAIL_LINES = 20  # lines of a started actor's log shown when it exits

# Commands that throw work away, move the robot or end the run: asked about first.
CONFIRM = {
    Command.RERECORD: "Discard this episode and record it again?",
    Command.RESET: "Reset: the arm will move to its reset pose. Is the workspace clear?",
    Command.CLEAR_ESTOP: "Clear the e-stop latch? (the robot keeps holding until you start)",
    Command.QUIT: "Quit: stop the actor safely (the robot holds, then releases) and close the console?",
}

RUNNING = "running"  # the one episode state in which the marks apply and a hold is a warning


def _hidden(key: str) -> Binding:
    """A key pressed while its command does not apply says why (a notification and a log line)."""
    return Binding(key, f"why('{key}')", show=False)


class ConsoleApp(App[int]):
    CSS_PATH = str(Path(__file__).with_name("console.tcss"))  # absolute: subclasses live elsewhere
    TITLE = "pirl console"
    VERTICAL_BREAKPOINTS = [(0, "-short"), (34, "-tall")]
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]
    ENABLE_COMMAND_PALETTE = False  # one screen, one job: no hidden command surface next to a robot
    # The tooltip is the key's line in the help screen (`?`). Keys that share a letter (t) come first in
    # the order that check_action picks from; the hidden `why` bindings catch a key that does not apply now.
    BINDINGS = [
        Binding(
            "space",
            "estop",
            "E-STOP",
            key_display="spc",
            priority=True,
            tooltip="E-STOP: the robot holds at once and stays held until cleared (c). Always active, "
            "in every dialog too, connected or not",
        ),
        Binding("c", "ask('clear_estop')", "clear e-stop", tooltip="clear the e-stop latch (asks first)"),
        Binding(
            "g",
            "start",
            "start",
            tooltip="start: confirm the next episode, or resume after a pause (when no episode runs "
            "and the arm is not driving home)",
        ),
        Binding(
            "p",
            "pause",
            "pause",
            tooltip="pause: end the running episode at the next chunk and start no new one (while an "
            "episode runs, or while the arm drives home); g resumes",
        ),
        Binding(
            "t",
            "takeover_on",
            "takeover",
            tooltip="takeover: the human drives (between episodes: the next episode starts with the human)",
        ),
        Binding("t", "takeover_off", "hand back", tooltip="hand back: the policy drives again"),
        Binding("s", "send('success')", "success", tooltip="end the running episode as a success"),
        Binding("f", "send('failure')", "failure", tooltip="end the running episode as a failure"),
        Binding(
            "r",
            "ask('rerecord')",
            "redo",
            tooltip="redo (re-record): discard the running episode and record it again (asks first)",
        ),
        Binding(
            "h",
            "ask('reset')",
            "reset",
            tooltip="reset: end the episode, the arm drives to its reset pose (asks first)",
        ),
        Binding("question_mark", "help", "help", key_display="?", tooltip="this list of keys"),
        Binding(
            "q",
            "ask('quit')",
            "quit",
            tooltip="quit: the actor stops safely, then the console exits (asks first; ctrl+q too). "
            "After the actor exited: quits at once, with a non-zero exit code",
        ),
        Binding("ctrl+q", "ask('quit')", "quit", show=False, priority=True),
        *(_hidden(k) for k in "cgptsfrh"),
    ]

    def __init__(self, control: ControlConfig | None = None, actor: ActorProcess | None = None) -> None:
        super().__init__()
        self.control = control
        self.actor = actor
        self.client: ControlClient | None = None
        self.status: ActorStatus | None = None
        self.connected = False  # authenticated: the actor takes this console's commands
        self.ever_connected = False
        self.clock = time.monotonic  # replaceable, so a snapshot shows a fixed elapsed time
        self._link_detail = ""  # the link's last reason, so the log notes each new one once
        self._link_since = self.clock()  # when the link went down (or the console started)
        self.acks: list[Ack] = []  # every answer, newest last (tests and the log pane read it)
        self._last_status_at = 0.0
        self._estop_sent_at: float | None = None  # e-stop pressed, not yet seen latched
        self.quit_requested = False  # the operator confirmed quit (the actor was asked to stop)
        self.actor_exit: int | None = None  # exit code of the started actor, once it exited on its own
        self.actor_tail: list[str] = []  # ... and the last lines of its log

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
        self._link_since = self.clock()
        self._show_link()
        if self.control is not None:
            self.client = ControlClient(
                self.control, on_status=self._link_status, on_connection=self._link_state
            )
            self.run_worker(self.client.run(), name="control-link", group="link")
        self.set_interval(0.5, self._tick)

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

    @property
    def actor_usable(self) -> bool:
        """The actor takes this console's commands: connected with the token, and not known to be dead."""
        return self.connected and self.actor_exit is None

    def show_status(self, status: ActorStatus) -> None:
        """Render one status in every panel (called ~10 Hz by the control link, or directly)."""
        previous = self.status
        if previous is not None and status.loop.steps < previous.loop.steps:
            self.query_one(LogPane).actor_restarted()
        if status.estop:
            self._estop_sent_at = None
        if self._binding_state(status) != self._binding_state(previous):
            self.refresh_bindings()
        self.status = status
        self._last_status_at = self.clock()
        episode = self.query_one(EpisodePanel)
        episode.estop_pending = self._estop_sent_at is not None
        for panel in self.query(Panel):
            panel.show(status)
        # A hold at a planned boundary (the episode ended, the arm drives home or waits) is no warning:
        # only a hold while an episode runs is. A boundary can pass between two statuses (a lockstep sim
        # resets in milliseconds), so a line that arrives with the next episode's first status counts too.
        boundary = (
            status.episode.state != RUNNING
            or previous is None
            or previous.episode.state != RUNNING
            or previous.episode.number != status.episode.number
        )
        self.query_one(LogPane).show(status, boundary=boundary)
        self._show_link()

    @staticmethod
    def _binding_state(status: ActorStatus | None) -> tuple[bool, str, bool]:
        if status is None:
            return (False, "", False)
        return (status.estop, status.episode.state, status.episode.intervention)

    def show_link(self, connected: bool, detail: str) -> None:
        was, said = self.connected, self._link_detail
        self.connected, self._link_detail = connected, detail
        if connected != was:
            self._link_since = self.clock()
            self.refresh_bindings()
        self.ever_connected |= connected
        self._show_link()
        # The log has room for the whole reason (e.g. which token file is missing); the top line may not.
        if connected != was or (not connected and detail != said):
            self.query_one(LogPane).note(f"actor link: {detail}", ok=connected)

    def link_text(self) -> tuple[str, bool]:
        """The top line's part about the actor: (text, ok)."""
        now = self.clock()
        if self.actor_exit is not None:
            return f"actor EXITED (rc={self.actor_exit}): q quits", False
        if not self.connected:
            verb = "reconnecting" if self.ever_connected else "connecting"
            why = _short_reason(self._link_detail)
            starting = self.actor is not None and not self.ever_connected and self.actor.poll() is None
            if starting and why.startswith("actor not reachable"):  # it is not listening yet
                why = f"actor pid {self.actor.pid} starting"
            text = f"{verb} to the actor… {now - self._link_since:.0f} s"
            return (f"{text} ({why})" if why else text), False
        if self.status is not None:
            age = now - self._last_status_at
            if age > STALE_STATUS_S:
                return f"actor: SILENT for {age:.0f} s", False
        return "actor: connected", True

    def _show_link(self) -> None:
        text, ok = self.link_text()
        self.query_one(StatusBar).show(
            self.status,
            link=text,
            link_ok=ok,
            connected=self.actor_usable,
            estop_pending=self._estop_sent_at is not None,
        )

    def _tick(self) -> None:
        """Twice a second: elapsed times, a silent actor, an e-stop that never showed, a dead actor."""
        if not self.is_running:  # the app is exiting: its panels may already be gone
            return
        try:
            self._tick_now()
        except NoMatches:  # the panels are being torn down (exit): a display refresh, the next tick retries
            return

    def _tick_now(self) -> None:
        if self._estop_sent_at is not None and self.clock() - self._estop_sent_at > ESTOP_PENDING_S:
            self._estop_pending(False)
        self._check_actor()
        self._show_link()

    def _check_actor(self) -> None:
        """A started actor that exited on its own (a missing calibration file, a crash, its episode count
        done): say so with the end of its log, offer only e-stop, help and quit, and quit non-zero."""
        if self.actor is None or self.quit_requested or self.actor_exit is not None:
            return
        rc = self.actor.poll()
        if rc is None:
            return
        self.actor_exit = rc
        self.actor_tail = self.actor.tail(EXIT_TAIL_LINES)
        log = self.query_one(LogPane)
        log.note(f"the actor exited (rc={rc}); the end of {self.actor.log_path}:", ok=False)
        for line in self.actor_tail:
            log.actor_output(line)
        self.refresh_bindings()
        self._show_link()
        self.push_screen(ActorExitedScreen(rc, str(self.actor.log_path), self.actor_tail, self.exit_code))

    @property
    def exit_code(self) -> int:
        """0, or non-zero when a started actor exited on its own with an error."""
        rc = self.actor_exit
        if rc is None or rc == 0:
            return 0
        return rc if 0 < rc < 256 else 1

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
            self._estop_pending(False)
        else:
            log.note(f"{command.value} NOT TAKEN: {ack.detail}", ok=False)
        return ack

    def _dispatch(self, command: Command) -> None:
        self.run_worker(self.send(command), group="commands")

    def action_estop(self) -> None:
        # Shown at once (top line and episode panel: "E-STOP SENT"), until a status shows it latched.
        if not (self.status is not None and self.status.estop):
            self._estop_pending(True)
        self._dispatch(Command.ESTOP)

    def _estop_pending(self, pending: bool) -> None:
        """Show (or stop showing) an e-stop that was sent but is not yet seen latched in a status."""
        self._estop_sent_at = self.clock() if pending else None
        episode = self.query_one(EpisodePanel)
        episode.estop_pending = pending
        if self.status is not None:
            episode.show(self.status)
        self._show_link()

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

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.BINDINGS))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Which keys apply now (the footer shows only those):

        * e-stop, help and quit always; nothing else until the console is connected with the token, nor
          after a started actor exited;
        * g (start) when no episode runs and the arm is not driving home; p (pause) while an episode runs
          or the arm drives home (the next episode will not start); so neither key ever means the other;
        * s, f, r (marks) only while an episode runs: they apply to the running episode;
        * t is takeover or hand back, whichever applies;
        * while the e-stop is latched, c (clear) replaces start, pause, takeover and reset (the robot holds
          until the latch is cleared, so none could act).
        """
        if action in ("estop", "help", "why") or (action == "ask" and parameters == ("quit",)):
            return True
        if not self.actor_usable or self.status is None:
            return False
        st = self.status
        estop, state, human = st.estop, st.episode.state, st.episode.intervention
        if action == "ask" and parameters == ("clear_estop",):
            return estop
        if estop and action in ("start", "pause", "takeover_on", "takeover_off", "ask"):
            return False
        if action == "start":
            return state not in (RUNNING, "resetting")
        if action == "pause":
            return state in (RUNNING, "resetting")
        if action == "takeover_on":
            return not human
        if action == "takeover_off":
            return human
        if action == "send" or (action == "ask" and parameters == ("rerecord",)):
            return state == RUNNING
        return True

    def action_why(self, key: str) -> None:
        """A key whose command does not apply now: say why, instead of doing nothing."""
        message = self.why_not(key)
        self.query_one(LogPane).note(f"{key}: {message}", ok=False)
        self.notify(message, severity="warning", timeout=4)

    def why_not(self, key: str) -> str:
        st = self.status
        if self.actor_exit is not None:
            return f"the actor exited (rc={self.actor_exit}): nothing to command; q quits"
        if not self.connected or st is None:
            return "not connected to the actor yet: only the e-stop (space) works"
        state = st.episode.state
        if key == "c":
            return "the e-stop is not latched"
        if st.estop:
            return "the e-stop is latched: c clears it first"
        if key in "sfr":
            return "no running episode: marks apply to a running episode"
        if key == "g":
            if state == "resetting":
                return "the arm is driving home: g starts once the episode panel says READY"
            return "an episode is running: p pauses it"
        if key == "p":
            return "no running episode to pause (g starts one)"
        return "not available now"

    def action_ask(self, name: str) -> None:
        command = Command(name)
        if command is Command.QUIT and self.actor_exit is not None:
            self.exit(self.exit_code, return_code=self.exit_code)  # nothing left to stop safely
            return
        if isinstance(self.screen, ConfirmScreen | HelpScreen | ActorExitedScreen):
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
        code = self.exit_code
        self.exit(code, return_code=code)


def _short_reason(detail: str) -> str:
    """The top line's short form of a link reason (`no token, e-stop only: <path> not found (...)` ->
    `no token, e-stop only`); the log has the whole of it."""
    if detail in ("", "connected", "not connected"):
        return ""
    return re.split(r" \(|: ", detail, maxsplit=1)[0]
