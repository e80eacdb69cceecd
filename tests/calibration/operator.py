"""A scripted stand-in for the human at the keyboard and at the arm during LeRobot's calibration."""

from __future__ import annotations

from calibration.flow import OperatorIO
from tests.mocks.servo import SimulatedArm


class ScriptedOperator:
    """Answers LeRobot's prompts and moves the simulated arm like a person would.

    At "move to the middle" it puts the shafts at `middle` (raw ticks) and queues each joint's `sweep`;
    it answers "c" to "use the existing file or recalibrate?"; it presses Enter once `record_samples`
    range-recording samples have been taken. `lines` keeps everything printed.
    """

    def __init__(
        self,
        arm: SimulatedArm,
        middle: dict[str, float],
        sweeps: dict[str, list[float]],
        record_samples: int = 6,
    ):
        self.arm, self.middle, self.sweeps = arm, middle, sweeps
        self.record_samples = record_samples
        self.prompts: list[str] = []
        self.lines: list[str] = []
        self.polls = 0

    def input(self, prompt: str) -> str:
        self.prompts.append(prompt)
        if "middle of its range" in prompt:
            self.arm.set_actual(self.middle)
            # sample 0: homing read; sample 1: first range sample; then the sweep
            self.arm.script({m: [self.middle[m], self.middle[m], *seq] for m, seq in self.sweeps.items()})
        return "c"

    def stop(self) -> bool:
        self.polls += 1
        return self.polls >= self.record_samples

    def io(self) -> OperatorIO:
        return OperatorIO(
            input=self.input, stop=self.stop, out=self.lines.append, sleep=lambda s: None, redraw=False
        )

    @property
    def text(self) -> str:
        return "\n".join(self.lines)
