"""The one list of config choices a pirl config file may name, for every command that parses one.

draccus resolves `--robot.type=...`, `--teleop.type=...`, camera and policy types through registries that
are filled by importing the modules that define them. `pirl learner`, `pirl actor`, `pirl console`,
`pirl eval` and `pirl doctor` all call `register_choices()` so no command can drift from another (an eval
list of its own once lacked the `opencv` camera).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import os
import sys
import types

from app.rl.factory import register_policies

# Modules whose import registers config choices (policies "pirl_flow" and "pirl_vla", robot "sim_so101",
# LeRobot robots, and the camera types a real robot's `cameras` section names: "opencv", "intelrealsense").
REGISTRATIONS = (
    "hardware.sim",
    "lerobot.robots.so_follower",
    "lerobot.robots.koch_follower",
    "lerobot.cameras.opencv",
    "lerobot.cameras.realsense",
    # teleoperators for `teleop` (sim_expert comes with hardware.sim)
    "lerobot.teleoperators.so_leader",
    "lerobot.teleoperators.koch_leader",
    "lerobot.teleoperators.gamepad",
    # keyboard, keyboard_ee: the configuration module only (see CONFIG_ONLY)
    "lerobot.teleoperators.keyboard.configuration_keyboard",
)
# Loaded without running their package's __init__, which imports the device too: the keyboard teleoperator
# imports pynput, which connects to the X server at import (slow over SSH) and logs ~10 lines when it
# cannot. hardware.factory imports the device module when a keyboard device is built; it reuses this one.
CONFIG_ONLY = frozenset({"lerobot.teleoperators.keyboard.configuration_keyboard"})


def register_choices() -> None:
    """Import every module whose classes a run, eval or doctor config may name (idempotent)."""
    register_policies()
    for name in REGISTRATIONS:
        if name in CONFIG_ONLY:
            _import_config_only(name)
        else:
            importlib.import_module(name)


def _import_config_only(name: str) -> None:
    """Import `package.module` without executing `package/__init__.py` (unless the package is loaded)."""
    package, _, leaf = name.rpartition(".")
    if name in sys.modules or package in sys.modules:
        importlib.import_module(name)
        return
    folder = importlib.util.find_spec(package).submodule_search_locations[0]  # imports its parents only
    spec = importlib.util.spec_from_file_location(name, os.path.join(folder, f"{leaf}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # the package's own `from .configuration_x import ...` reuses it later
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    sys.meta_path.insert(0, _BindWhenImported(package, leaf, module))


class _BindWhenImported(importlib.abc.MetaPathFinder):
    """When the package is imported after all (to build the device), bind the module loaded earlier as its
    attribute, as a normal import would have (Python skips that for a module already in sys.modules)."""

    def __init__(self, package: str, leaf: str, module: types.ModuleType) -> None:
        self.package, self.leaf, self.module = package, leaf, module

    def find_spec(self, fullname, path, target=None):
        if fullname != self.package:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        run_init = spec.loader.exec_module

        def exec_module(package: types.ModuleType) -> None:
            setattr(package, self.leaf, self.module)
            run_init(package)

        spec.loader.exec_module = exec_module
        return spec
