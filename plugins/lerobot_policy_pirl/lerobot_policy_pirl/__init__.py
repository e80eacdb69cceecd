"""LeRobot plugin of pirl: importing it registers the policy types `pirl_flow` and `pirl_vla`.

LeRobot's tools call `lerobot.utils.import_utils.register_third_party_plugins()`, which imports every
installed distribution named `lerobot_policy_*` by that name; this is that module. After it, LeRobot's
`PreTrainedConfig.from_pretrained(<pirl checkpoint>)` and `get_policy_class("pirl_flow")` work as for a
built-in policy (LeRobot finds `PIRLFlowPolicy` next to `PIRLFlowConfig` by its naming convention).
"""

from __future__ import annotations

from app.rl.lerobot_policy import PIRLFlowConfig, PIRLFlowPolicy
from app.rl.vla_policy import PIRLVLAConfig, PIRLVLAPolicy

__all__ = ["PIRLFlowConfig", "PIRLFlowPolicy", "PIRLVLAConfig", "PIRLVLAPolicy"]
