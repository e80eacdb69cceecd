"""The architecture's import rules (docs/architecture.md), checked on the source so a shortcut fails CI.

The algorithm must stay pure torch (it runs on a GPU box with no robot stack), the console may only talk
to the actor through its control channel, and the robot side must never depend on the app above it.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# package folder -> module prefixes it must never import (at any depth, lazily or not)
FORBIDDEN = {
    "app/rl": (
        "hardware",
        "calibration",
        "app.actor",
        "app.learner",
        "app.console",
        "app.transport",
        "app.demo",
        "app.eval",
        "grpc",
        "textual",
        "mujoco",
        "lerobot.robots",
        "lerobot.teleoperators",
        "lerobot.cameras",
        "lerobot.transport",
    ),
    "app/console": ("hardware", "calibration", "app.learner", "app.rl", "lerobot.robots", "mujoco"),
    "hardware": ("app", "calibration"),
    "calibration": ("app",),
}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


# (file, module) pairs that are allowed despite FORBIDDEN, each with its reason.
ALLOWED = {
    # The launcher half of `pirl console` parses the run config to check the actor options it passes on
    # before starting the actor; the TUI itself still sees only the control channel.
    ("app/console/main.py", "app.run.config"),
}


def violations(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    out = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for line, module in imported_modules(path):
            if (rel, module) in ALLOWED:
                continue
            if any(module == f or module.startswith(f + ".") for f in forbidden):
                out.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return out


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_import_rules(folder):
    assert (ROOT / folder).is_dir()
    assert violations(folder, FORBIDDEN[folder]) == []


def test_the_checker_sees_lazy_imports(tmp_path, monkeypatch):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "m.py").write_text("def f():\n    from hardware.guard import RobotGuard\n    import grpc\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert violations("pkg", ("hardware", "grpc")) == [
        "pkg/m.py:2 imports hardware.guard",
        "pkg/m.py:3 imports grpc",
    ]
