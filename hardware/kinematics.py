"""Forward kinematics of the SO-101 end effector, from the same MuJoCo model the simulator uses.

The safety layer's workspace box and the envelope recorder need "where is the gripper for these joint
positions?" for a real arm as much as for the simulated one. MuJoCo's `mj_kinematics` on the shipped
`so101_new_calib.xml` answers that without a URDF toolchain (LeRobot's placo `RobotKinematics` would need
the URDF plus placo/pinocchio); the model's joint zero matches LeRobot's SO-101 calibration zero (the "new
calib" model). The model is loaded without its meshes (`so101_model.kinematic_xml`), so building an
`SO101Kinematics` takes milliseconds instead of parsing 16 MB of STL.

`fk_many` evaluates many poses at once in numpy (the chain of body transforms read from the same MjModel);
the safety layer uses it to check every corner of the joint-space box a step can sweep through.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

import numpy as np

from hardware import so101_model


class SO101Kinematics:
    """`fk(positions)` -> end-effector (gripperframe site) position in metres, base frame."""

    def __init__(self) -> None:
        import mujoco

        self._mujoco = mujoco
        self._model = so101_model.kinematic_model()
        self._data = mujoco.MjData(self._model)
        self._qpos_adr = [self._model.joint(m).qposadr[0] for m in so101_model.MOTORS]
        self._site = self._model.site(so101_model.EE_SITE).id
        self._lock = threading.Lock()
        self._site_pos = np.array(self._model.site_pos[self._site], dtype=np.float64)
        self._folded = [_fold(*link) for link in _site_chain(self._model, self._site)]

    @property
    def joints(self) -> tuple[str, ...]:
        """The motors the end-effector position depends on (the gripper's jaw is off the chain)."""
        return tuple(link[2] for link in self._folded if link[2] is not None)

    def fk(self, positions: Mapping[str, float]) -> np.ndarray:
        """Joint positions in LeRobot units (deg; gripper 0..100) -> xyz of the gripper frame (m)."""
        q = so101_model.positions_to_rad(positions)
        with self._lock:
            self._data.qpos[self._qpos_adr] = q
            self._mujoco.mj_kinematics(self._model, self._data)
            return self._data.site_xpos[self._site].copy()

    def fk_many(self, positions: Mapping[str, np.ndarray]) -> np.ndarray:
        """Vectorised `fk`: `{motor: array of N values}` (LeRobot units) -> (N, 3) gripper-frame xyz.

        Same numbers as `fk` (to floating-point rounding; tested), about 50x cheaper per pose for dozens of
        poses because it skips MuJoCo's per-call overhead and the bodies off the gripper's chain.
        """
        n = len(np.atleast_1d(next(iter(positions.values()))))
        rot = _EYE[None]  # (1 or n, 3, 3): stays one matrix until the first joint
        pos = np.zeros((1, 3))
        for body_pos, body_rot, joint, b_k, b_k2, b_ka, b_k2a in self._folded:
            if joint is None:
                pos = pos + rot @ body_pos
                rot = rot @ body_rot
                continue
            q = _to_rad(joint, np.asarray(positions[joint], dtype=np.float64).reshape(n))
            s, c1 = np.sin(q)[:, None], 1.0 - np.cos(q)[:, None]
            # body offset, then the hinge: rotation R = I + s K + (1 - c) K^2 about `anchor`, folded into
            # the body rotation B so one (n, 3, 3) product per link remains (see `_fold`)
            pos = pos + (rot @ (body_pos - s * b_ka - c1 * b_k2a)[:, :, None])[:, :, 0]
            rot = rot @ (body_rot + s[:, :, None] * b_k + c1[:, :, None] * b_k2)
        return pos + rot @ self._site_pos


def _site_chain(
    model, site_id: int
) -> list[tuple[np.ndarray, np.ndarray, str | None, np.ndarray, np.ndarray]]:
    """Root-to-site list of (body offset, body rotation, hinge joint name or None, anchor, axis)."""
    import mujoco

    chain = []
    body = int(model.site_bodyid[site_id])
    while body != 0:
        rot = np.zeros(9)
        mujoco.mju_quat2Mat(rot, model.body_quat[body])
        joints = [j for j in range(model.njnt) if model.jnt_bodyid[j] == body]
        if len(joints) > 1 or any(model.jnt_type[j] != mujoco.mjtJoint.mjJNT_HINGE for j in joints):
            raise ValueError(f"body {model.body(body).name!r}: fk_many supports one hinge joint per body")
        name = model.joint(joints[0]).name if joints else None
        anchor = np.array(model.jnt_pos[joints[0]], dtype=np.float64) if joints else np.zeros(3)
        axis = np.array(model.jnt_axis[joints[0]], dtype=np.float64) if joints else np.zeros(3)
        if joints:
            axis /= np.linalg.norm(axis)
        chain.append(
            (np.array(model.body_pos[body], dtype=np.float64), rot.reshape(3, 3), name, anchor, axis)
        )
        body = int(model.body_parentid[body])
    chain.reverse()
    return chain


def _to_rad(joint: str, values: np.ndarray) -> np.ndarray:
    """`so101_model.motor_to_rad` for an array (same affine maps: degrees, or 0..100 for the gripper)."""
    if joint == so101_model.GRIPPER:
        lo, hi = so101_model.joint_ranges_rad()[joint]
        return lo + (hi - lo) * values / 100.0
    return np.radians(values)


_EYE = np.eye(3)


def _fold(
    body_pos: np.ndarray, body_rot: np.ndarray, joint: str | None, anchor: np.ndarray, axis: np.ndarray
):
    """Per-link constants of `fk_many`: B K, B K^2, B K a and B K^2 a for body rotation B, the hinge's
    cross-product matrix K (unit axis) and anchor a, so that B R(q) = B + sin q (B K) + (1 - cos q) (B K^2)
    and B (a - R(q) a) = -sin q (B K a) - (1 - cos q) (B K^2 a), Rodrigues' formula with the identity and
    anchor terms cancelled."""
    if joint is None:
        return body_pos, body_rot, None, None, None, None, None
    k = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    k2 = k @ k
    return (
        body_pos,
        body_rot,
        joint,
        body_rot @ k,
        body_rot @ k2,
        body_rot @ (k @ anchor),
        body_rot @ (k2 @ anchor),
    )
