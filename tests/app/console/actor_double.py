"""A small actor for the console tests that need no learner (test_real_actor.py drives the real PI-RL
actor): the real simulated SO-101 (MuJoCo, lockstep, optionally with a rendered camera), the real
RobotGuard and the real ControlServer, with a minimal episode state machine.

It follows the actor contract the console relies on: commands arrive through `poll_commands()`, e-stop
also latches at once through `on_estop`, a status is published at ~10 Hz, and the robot only ever moves
through the guard. Its "policy" is a slow sweep that pushes shoulder_lift past its limit now and then, so
clamp events are real safety-layer events.
"""

from __future__ import annotations

import math
import threading
import time

from app.actor.status import JointView
from app.control.protocol import (
    ActorStatus,
    CameraThumbnail,
    Command,
    ControlConfig,
    EpisodeRecord,
    EpisodeStatus,
    LogLine,
    LoopStatus,
    RecordStatus,
)
from app.control.server import ControlServer


class SimActorDouble:
    def __init__(
        self,
        port: int = 0,
        hz: float = 30.0,
        camera: bool = False,
        episode_s: float = 20.0,
        console_timeout_s: float = 1.0,
    ) -> None:
        self._camera = camera
        self.robot = None
        self.guard = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.server = ControlServer(
            ControlConfig(port=port, rate_hz=20.0, console_timeout_s=console_timeout_s)
        )
        self.server.on_estop = lambda: self.guard is not None and self.guard.estop("console e-stop")
        self.hz = hz
        self.episode_s = episode_s
        self.state = "idle"
        self.episode = EpisodeStatus(number=0, length_s=episode_s)
        self.history: list[EpisodeRecord] = []
        self.record = RecordStatus()  # what it says about recording (it records nothing; tests set it)
        self.log: list[LogLine] = []
        self.commands: list[Command] = []
        self.steps = 0
        self.quit = threading.Event()
        self._t0 = 0.0
        self._human_steps = 0
        self._ep_steps = 0
        self._view = JointView()
        self._thread = threading.Thread(target=self._run, name="actor-double", daemon=True)

    @property
    def port(self) -> int:
        return self.server.address[1]

    def start(self) -> SimActorDouble:
        self.server.start()
        self._thread.start()
        self._ready.wait(60)
        if self._error is not None:
            raise RuntimeError("test actor failed to start") from self._error
        return self

    def _connect(self) -> None:
        """In the loop thread: MuJoCo's EGL context belongs to the thread that created it."""
        from hardware.guard import RobotGuard
        from hardware.sim.so101_follower import SimSO101Follower, SimSO101FollowerConfig

        cameras = {}
        if self._camera:
            from hardware.sim.cameras import SimCameraConfig

            cameras = {"front": SimCameraConfig(camera="front", width=64, height=48, fps=10)}
        self.robot = SimSO101Follower(SimSO101FollowerConfig(task="reach", cameras=cameras, fps=int(self.hz)))
        self.guard = RobotGuard(self.robot, install_signal_handlers=False).connect()

    def stop(self) -> None:
        self.quit.set()
        self._thread.join(timeout=5)
        self.server.close()
        if self.guard is not None and not self.guard.closed:
            self.guard.close()

    # -- the loop

    def _say(self, text: str, level: str = "INFO") -> None:
        self.log.append(LogLine(len(self.log) + 1, level, text))
        del self.log[:-20]

    def _run(self) -> None:
        try:
            self._connect()
        except BaseException as exc:
            self._error = exc
            raise
        finally:
            self._ready.set()
        period = 1.0 / self.hz
        home = self.robot.home_position
        while not self.quit.is_set():
            t_start = time.monotonic()
            for cmd in self.server.poll_commands():
                self.commands.append(cmd)
                self._handle(cmd)
            if self.quit.is_set():
                break
            if self.guard.estopped:
                self.state = "holding"
                result = self.guard.step(None, source="hold")
            elif self.state == "running":
                t = self._ep_steps * period
                action = {f"{m}.pos": v for m, v in home.items()}
                action["shoulder_pan.pos"] += 25 * math.sin(t)
                action["shoulder_lift.pos"] += 140 * math.sin(0.5 * t)  # beyond the limit: clamped
                source = "human" if self.episode.intervention else "policy"
                if self.episode.intervention:
                    action = self.guard.present()  # a human holding the leader arm still
                    action = {f"{k.removesuffix('.pos')}.pos": v for k, v in action.items()}
                    self._human_steps += 1
                result = self.guard.step(action, source=source)
                self._ep_steps += 1
                self.episode.reward += 0.01
                self.episode.time_left_s = max(0.0, self.episode_s - self._ep_steps * period)
                if self.episode.time_left_s <= 0:
                    self._finish(None)
            else:
                result = self.guard.step(None, source="hold")
            del result
            self.steps += 1
            if self.server.status_due():
                self.server.publish(self._status(time.monotonic() - t_start))
            time.sleep(max(0.0, period - (time.monotonic() - t_start)))
        self.guard.close()

    def _handle(self, cmd: Command) -> None:
        ep = self.episode
        if cmd is Command.ESTOP:
            self.guard.estop("console e-stop")
            self._say("E-STOP latched by operator", "WARNING")
        elif cmd is Command.CLEAR_ESTOP:
            self.guard.clear_estop()
            self.state = "paused"
            self._say("e-stop cleared; holding until start")
        elif self.guard.estopped and cmd is not Command.QUIT:
            self._say(f"{cmd} refused: e-stop latched", "WARNING")
        elif cmd is Command.START:
            if self.state in ("idle", "done"):
                self.episode = EpisodeStatus(number=ep.number + 1, length_s=self.episode_s, state="running")
                self._ep_steps = self._human_steps = 0
            self.state = "running"
        elif cmd is Command.PAUSE:
            self.state = "paused"
            self.guard.hold("paused")
        elif cmd is Command.TAKEOVER_ON:
            ep.intervention = True
            ep.interventions += 1
        elif cmd is Command.TAKEOVER_OFF:
            ep.intervention = False
        elif cmd in (Command.SUCCESS, Command.FAILURE):
            self._finish(cmd is Command.SUCCESS)
        elif cmd is Command.RERECORD:
            self.episode = EpisodeStatus(number=ep.number, length_s=self.episode_s)
            self.state = "idle"
            self._say(f"episode {ep.number} discarded for re-recording")
        elif cmd is Command.RESET:
            self.state = "resetting"
            self.guard.move_to({f"{m}.pos": v for m, v in self.robot.home_position.items()})
            self.state = "idle"
        elif cmd is Command.QUIT:
            self._say("quit: holding and releasing the robot")
            self.quit.set()
        self.episode.state = self.state

    def _finish(self, success: bool | None) -> None:
        ep = self.episode
        ep.outcome = {True: "success", False: "failure", None: None}[success]
        rate = self._human_steps / self._ep_steps if self._ep_steps else 0.0
        self.history.append(
            EpisodeRecord(ep.number, success, ep.reward, ep.interventions, rate, self._ep_steps)
        )
        self.state = "done"
        ep.intervention = False
        self._say(f"episode {ep.number} done: {ep.outcome or 'timeout'}")

    def _status(self, step_s: float) -> ActorStatus:
        gs = self.guard.status()
        self.episode.state = self.state
        cams = {}
        if self.robot.cameras:
            obs = self.robot.get_observation()
            cams = {k: CameraThumbnail.from_array(obs[k]) for k in self.robot.cameras}
        return ActorStatus(
            robot="sim_so101 (test actor)",
            estop=gs.estopped,
            holding=gs.holding,
            hold_reason=gs.hold_reason or "",
            joints=self._view(gs.present, gs.commanded, gs.limits, gs.episode_safety.get("events", {})),
            safety_events=gs.episode_safety.get("by_kind", {}),
            episode=EpisodeStatus(**vars(self.episode)),
            loop=LoopStatus(
                hz=gs.loop_hz or self.hz, target_hz=self.hz, inference_ms=step_s * 1e3, steps=self.steps
            ),
            record=RecordStatus(**vars(self.record)),
            history=list(self.history),
            log=list(self.log),
            cameras=cams,
        )
