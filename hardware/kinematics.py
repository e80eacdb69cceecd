"""Forward kinematics of the SO-101 end effector, from the same MuJoCo model the simulator uses.

The safety layer's workspace box and the envelope recorder need "where is the gripper for these joint
positions?" for a real arm as much as for the simulated one. MuJoCo's `mj_kinematics` on the shipped
`so101_new_calib.xml` answers that without a URDF toolchain; the model's joint zero matches LeRobot's
SO-101 calibration zero (the "new calib" model).
"""

from __future__ import annotations

import threading

import numpy as np

from hardware import so101_model


class SO101Kinematics:
    """`fk(positions)` -> end-effector (gripperframe site) position in metres, base frame."""

    def __init__(self) -> None:
        import mujoco

        self._mujoco = mujoco
        self._model = mujoco.MjModel.from_xml_path(str(so101_model.arm_xml()))
        self._data = mujoco.MjData(self._model)
        self._qpos_adr = [self._model.joint(m).qposadr[0] for m in so101_model.MOTORS]
        self._site = self._model.site(so101_model.EE_SITE).id
        self._lock = threading.Lock()

    def fk(self, positions: dict[str, float]) -> np.ndarray:
        """Joint positions in LeRobot units (deg; gripper 0..100) -> xyz of the gripper frame (m)."""
        q = so101_model.positions_to_rad(positions)
        with self._lock:
            self._data.qpos[self._qpos_adr] = q
            self._mujoco.mj_kinematics(self._model, self._data)
            return self._data.site_xpos[self._site].copy()
