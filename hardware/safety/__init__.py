"""The safety layer: every action, from the policy or a human, passes through here before the robot.

`SafetyConfig` (what is enforced), `SafetyLayer` (the filter and its per-episode `SafetyReport`) and
`SafetyEnvelope` (the file calibration records). The RobotGuard (`hardware/guard.py`) is what applies it.
"""

from hardware.safety.config import SafetyConfig
from hardware.safety.envelope import EnvelopeError, SafetyEnvelope
from hardware.safety.layer import SafetyLayer, SafetyReport, SafetyResult

__all__ = ["EnvelopeError", "SafetyConfig", "SafetyEnvelope", "SafetyLayer", "SafetyReport", "SafetyResult"]
