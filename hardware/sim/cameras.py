"""Rendered cameras for the simulated SO-101, configured like LeRobot cameras (`width`, `height`, `fps`).

`SimCameraConfig` is registered as LeRobot camera type `sim_mujoco`, so a robot config lists sim cameras
exactly as it lists OpenCV or RealSense ones. Frames are rendered with MuJoCo's offscreen renderer (EGL
headless) using the scene's fast settings, and refreshed at the camera's `fps` in *simulated* time: a
30 fps camera on a 30 Hz control loop renders once per step, a 10 fps one every third step (the last frame
is returned in between, as `read_latest` does on a real camera).
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np
from lerobot.cameras import CameraConfig

from hardware.sim.scene import SCENE_CAMERAS


@CameraConfig.register_subclass("sim_mujoco")
@dataclass(kw_only=True)
class SimCameraConfig(CameraConfig):
    camera: str = "front"  # which scene camera to render: front, top, side or wrist
    fps: int | None = 30  # frames per second of simulated time
    width: int | None = 128  # pixels
    height: int | None = 128  # pixels

    def __post_init__(self) -> None:
        if self.camera not in SCENE_CAMERAS:
            raise ValueError(f"unknown sim camera {self.camera!r}; choose one of {list(SCENE_CAMERAS)}")
        for attr in ("fps", "width", "height"):
            value = getattr(self, attr)
            if value is None or value <= 0:
                raise ValueError(f"sim camera {attr} must be a positive integer, got {value!r}")


class SimCamera:
    """One offscreen renderer for one scene camera; `read(data, sim_time)` -> HxWx3 uint8 RGB."""

    def __init__(self, config: SimCameraConfig, model: mujoco.MjModel) -> None:
        self.config = config
        self.width, self.height, self.fps = int(config.width), int(config.height), int(config.fps)
        self._model = model
        self._renderer: mujoco.Renderer | None = None
        self._frame: np.ndarray | None = None
        self._frame_time = -np.inf

    @property
    def is_connected(self) -> bool:
        return self._renderer is not None

    def connect(self) -> None:
        try:
            self._renderer = mujoco.Renderer(self._model, height=self.height, width=self.width)
        except Exception as exc:  # no GL context: say what to do
            raise RuntimeError(
                f"could not open a MuJoCo renderer for sim camera {self.config.camera!r} ({exc}); "
                "set MUJOCO_GL=egl (headless) or MUJOCO_GL=glfw (desktop), or run the sim state-only "
                "(no cameras)"
            ) from exc
        self._frame, self._frame_time = None, -np.inf

    def read(self, data: mujoco.MjData, sim_time: float) -> np.ndarray:
        """Latest frame; re-rendered when a new frame is due at the camera's fps (in sim time)."""
        if self._renderer is None:
            raise RuntimeError(f"sim camera {self.config.camera!r} is not connected")
        due = sim_time - self._frame_time >= 1.0 / self.fps - 1e-9
        if self._frame is None or due or sim_time < self._frame_time:  # (sim time restarts on reset)
            self._renderer.update_scene(data, camera=self.config.camera)
            self._frame = self._renderer.render().copy()
            self._frame_time = sim_time
        return self._frame

    def invalidate(self) -> None:
        """Forget the last frame (the world jumped, e.g. on reset), so the next read renders."""
        self._frame, self._frame_time = None, -np.inf

    def disconnect(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
        self._renderer = None
