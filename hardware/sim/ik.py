"""Damped-least-squares inverse kinematics for the SO-101 gripper frame, on the shipped MuJoCo arm model.

The scripted expert needs "which joints put the gripper here?" to act like a human teleoperator; the task
sampler needs it to keep targets reachable. Position is solved with the four pitch/yaw joints (pan, lift,
elbow, wrist flex); an optional soft term tilts the gripper's approach axis (the site's x axis) towards a
wanted direction, e.g. straight down for a top grasp. Wrist roll and gripper are left to the caller.
"""

from __future__ import annotations

import numpy as np

from hardware import so101_model

IK_JOINTS: tuple[str, ...] = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex")


class ArmIK:
    """Position (+ soft approach-axis) IK in LeRobot units. Not thread-safe: one per user."""

    def __init__(self) -> None:
        import mujoco

        self._mj = mujoco
        self._model = so101_model.kinematic_model()  # geoms stripped: compiles in ms, same kinematics
        self._data = mujoco.MjData(self._model)
        self._qadr = np.array([self._model.joint(m).qposadr[0] for m in so101_model.MOTORS])
        self._dof = np.array([self._model.joint(m).dofadr[0] for m in IK_JOINTS])
        self._site = self._model.site(so101_model.EE_SITE).id
        ranges = so101_model.joint_ranges_rad()
        margin = np.radians(3.0)
        self._lo = np.array([ranges[m][0] + margin for m in IK_JOINTS])
        self._hi = np.array([ranges[m][1] - margin for m in IK_JOINTS])
        self._jacp = np.zeros((3, self._model.nv))
        self._jacr = np.zeros((3, self._model.nv))

    def _set(self, q_rad: np.ndarray) -> None:
        self._data.qpos[self._qadr] = q_rad
        self._mj.mj_kinematics(self._model, self._data)
        self._mj.mj_comPos(self._model, self._data)

    def pose(self, positions: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
        """Gripper-frame position (m) and approach axis (unit vector) for joints in LeRobot units."""
        self._set(so101_model.positions_to_rad(positions))
        return self._data.site_xpos[self._site].copy(), self._data.site_xmat[self._site].reshape(3, 3)[:, 0]

    def jaw_axis(self) -> np.ndarray:
        """Jaw closing axis (site z: from the fixed pad towards the moving one) of the last `pose`/`solve`."""
        return self._data.site_xmat[self._site].reshape(3, 3)[:, 2].copy()

    def solve(
        self,
        target: np.ndarray,
        seed: dict[str, float],
        approach: np.ndarray | None = None,
        approach_weight: float = 0.0,
        iterations: int = 60,
        tolerance: float = 1e-3,
    ) -> tuple[dict[str, float], float]:
        """Joints (LeRobot units) that bring the gripper frame to `target` (m), starting from `seed`.

        Returns the solution (wrist roll and gripper copied from `seed`) and the remaining position error (m);
        an unreachable target gives the closest reachable point and a large error rather than an exception.
        """
        q = so101_model.positions_to_rad(seed)
        idx = [so101_model.MOTORS.index(m) for m in IK_JOINTS]
        target = np.asarray(target, dtype=np.float64)
        err_norm = np.inf
        for _ in range(iterations):
            self._set(q)
            pos = self._data.site_xpos[self._site]
            err = target - pos
            err_norm = float(np.linalg.norm(err))
            self._mj.mj_jacSite(self._model, self._data, self._jacp, self._jacr, self._site)
            jac = self._jacp[:, self._dof]
            damping = 1e-4
            jinv = jac.T @ np.linalg.inv(jac @ jac.T + damping * np.eye(3))
            dq = jinv @ err
            if approach is not None and approach_weight > 0.0:
                # Secondary task in the null space of the position task: tilt the approach axis.
                axis = self._data.site_xmat[self._site].reshape(3, 3)[:, 0]
                skew = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
                jax = -skew @ self._jacr[:, self._dof]  # d(axis)/dq = omega x axis
                dq_ax = jax.T @ np.linalg.solve(jax @ jax.T + 1e-3 * np.eye(3), np.asarray(approach) - axis)
                dq = dq + approach_weight * (np.eye(len(self._dof)) - jinv @ jac) @ dq_ax
            elif err_norm < tolerance:
                break
            dq = np.clip(dq, -0.2, 0.2)
            q[idx] = np.clip(q[idx] + dq, self._lo, self._hi)
            if err_norm < tolerance and float(np.abs(dq).max()) < 1e-3:
                break  # converged, secondary task included
        self._set(q)
        err_norm = float(np.linalg.norm(target - self._data.site_xpos[self._site]))
        out = dict(seed)
        for i, m in zip(idx, IK_JOINTS, strict=True):
            out[m] = so101_model.rad_to_motor(m, q[i])
        return out, err_norm
