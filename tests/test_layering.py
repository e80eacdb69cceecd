"""The architecture's import rules (docs/architecture.md), checked on the source so a shortcut fails CI.

Each package folder has a positive allow-list: every first-party import in a file under it (at any depth,
lazy or not, relative ones resolved to absolute names) must start with one of the folder's allowed
prefixes. Third-party imports are free except for the folder's deny list (the algorithm stays pure torch
and runs on a GPU box with no robot stack; the console talks to the actor only through its control
channel; the robot side never depends on the app above it).
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Top-level names that are this repository's own code.
FIRST_PARTY = ("app", "hardware", "calibration", "benchmarks", "tests")

# Robot-stack and UI modules the learner side / the pure algorithm must not pull in.
ROBOT_STACK = ("mujoco", "lerobot.robots", "lerobot.teleoperators", "lerobot.cameras", "lerobot.motors")


@dataclass(frozen=True)
class Rule:
    allow: tuple[str, ...]  # first-party module prefixes a file may import
    deny: tuple[str, ...] = ()  # third-party module prefixes it must not import
    optional: bool = False  # the folder is still being created: skip it while it does not exist


# Folder (or single file) -> its rule. A file gets the rule of its longest matching folder, or its own.
RULES: dict[str, Rule] = {
    # PI-RL, pure torch (+ LeRobot's policies/configs/rl algorithms): no robot, network or UI stack.
    "app/rl": Rule(
        allow=("app.rl",),
        deny=("grpc", "textual", "rich", "lerobot.transport", *ROBOT_STACK),
    ),
    # Channel options and the codec for what crosses LeRobot's LearnerService.
    "app/transport": Rule(allow=("app.transport",), deny=("textual", *ROBOT_STACK)),
    # The console <-> actor protocol (protocol, server, client): plain JSON lines, no torch needed.
    "app/control": Rule(allow=("app.control",), deny=("torch", "grpc", "textual", "lerobot", "mujoco")),
    # The Textual operator console: sees the actor only through the control channel.
    "app/console": Rule(allow=("app.console", "app.control"), deny=("torch", "grpc", "lerobot", "mujoco")),
    # Exception: the launcher half of `pirl console` parses the run config (app.run) to check the actor
    # options it passes on before starting the actor process; the TUI itself never sees the run.
    "app/console/main.py": Rule(
        allow=("app.console", "app.control", "app.run"), deny=("torch", "grpc", "lerobot", "mujoco")
    ),
    # Neutral shared config, registry, parsing, process front end, launcher, SAC hand-off. From hardware
    # only the config pieces the run config composes: EpisodeConfig, SafetyConfig, the teleop type table;
    # from app/episode only the recording section (`actor.record`, plain dataclasses).
    "app/run": Rule(
        allow=(
            "app.run",
            "app.rl",
            "app.transport",
            "app.control",
            "app.episode.record_config",
            "hardware.episodes",
            "hardware.safety.config",
            "hardware.factory",
        ),
        deny=("grpc", "textual", "mujoco"),
    ),
    "app/learner": Rule(
        allow=("app.learner", "app.run", "app.rl", "app.transport"),
        deny=("textual", *ROBOT_STACK),
    ),
    "app/actor": Rule(
        allow=("app.actor", "app.episode", "app.run", "app.rl", "app.transport", "app.control", "hardware"),
        deny=("textual",),
    ),
    # The one chunk/episode executor: observation -> policy or human -> safety guard -> robot -> episodes.
    "app/episode": Rule(allow=("app.episode", "app.rl", "hardware"), deny=("grpc", "textual")),
    "app/eval": Rule(
        allow=("app.eval", "app.episode", "app.run", "app.rl", "app.report", "hardware"),
        deny=("grpc", "textual"),
    ),
    "app/demo": Rule(
        allow=("app.demo", "app.episode", "app.run", "app.rl", "app.eval", "app.report", "hardware"),
        deny=("grpc", "textual"),
    ),
    # Plots and progress bars: plain numbers in, PNGs and bars out; nothing first-party, no torch or robot
    # stack (the demo, eval and the benchmarks use it; benchmarks/ has no rule of its own).
    "app/report": Rule(allow=("app.report",), deny=("torch", "lerobot", "grpc", "textual", "mujoco")),
    "hardware": Rule(allow=("hardware",), deny=("grpc", "textual")),
    "calibration": Rule(allow=("calibration", "hardware"), deny=("grpc", "textual")),
    # Top-level files of app/: exactly what each imports (cli.py imports its commands by name, lazily).
    "app/__init__.py": Rule(allow=()),
    "app/__main__.py": Rule(allow=("app.cli",)),
    # `from app import __version__` (the package itself, not what is below it) and the ConfigError it prints;
    # the commands are imported by name (importlib), which this checker does not follow.
    "app/cli.py": Rule(allow=("app$", "app.run.errors")),
    "app/bc.py": Rule(allow=("app.rl",)),
    "app/doctor.py": Rule(allow=("app.run", "hardware")),
}

# Imports that break the target layout today, each reported and each to be removed by the restructuring
# (issue "One house"). Listed so the suite stays green meanwhile; an entry that no longer occurs fails
# `test_known_violations_are_still_real`, so this list can only shrink.
KNOWN_VIOLATIONS: set[tuple[str, str]] = {
    ("app/demo/cli.py", "app.console.main"),  # --headless=false opens the console in-process
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) for every import in the file, lazy ones and relative ones included.

    `from . import x` resolves to `<package>.x`, `from ..y import z` to `<parent package>.y`.
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                found.append((node.lineno, node.module))
                continue
            parts = package.split(".") if package else []
            if node.level > len(parts):
                raise ValueError(f"{path}:{node.lineno}: relative import beyond the top-level package")
            base = ".".join(parts[: len(parts) - node.level + 1])
            if node.module:
                found.append((node.lineno, f"{base}.{node.module}"))
            else:
                found += [(node.lineno, f"{base}.{a.name}") for a in node.names]
    return found


def _matches(module: str, prefixes: tuple[str, ...]) -> bool:
    """A prefix matches the module and everything below it; "name$" matches that module only."""
    return any(
        module == p[:-1] if p.endswith("$") else module == p or module.startswith(p + ".") for p in prefixes
    )


def rule_for(rel: str) -> Rule | None:
    """The rule of a file (posix path relative to ROOT): its own, else its longest matching folder's."""
    if rel in RULES:
        return RULES[rel]
    folders = [f for f in RULES if not f.endswith(".py") and rel.startswith(f + "/")]
    return RULES[max(folders, key=len)] if folders else None


def violations(folder: str, known: set[tuple[str, str]] = frozenset()) -> list[str]:
    out = []
    target = ROOT / folder
    paths = [target] if target.is_file() else sorted(target.rglob("*.py"))
    for path in paths:
        rel = path.relative_to(ROOT).as_posix()
        rule = rule_for(rel)
        if rule is None:
            out.append(f"{rel}: no import rule covers this file")
            continue
        for line, module in imported_modules(path):
            if (rel, module) in known:
                continue
            if module.split(".")[0] in FIRST_PARTY:
                if not _matches(module, rule.allow):
                    out.append(f"{rel}:{line} imports {module} (not allowed here)")
            elif _matches(module, rule.deny):
                out.append(f"{rel}:{line} imports {module} (denied here)")
    return out


@pytest.mark.parametrize("folder", sorted(RULES))
def test_import_rules(folder):
    if not (ROOT / folder).exists():
        if RULES[folder].optional:
            pytest.skip(f"{folder} does not exist yet")
        pytest.fail(f"{folder} has an import rule but does not exist")
    assert violations(folder, KNOWN_VIOLATIONS) == []


@pytest.mark.parametrize("top", ["app", "hardware", "calibration"])
def test_every_file_has_a_rule(top):
    """A new folder or top-level file under app/ needs its row in RULES (and in docs/architecture.md)."""
    uncovered = [
        p.relative_to(ROOT).as_posix()
        for p in sorted((ROOT / top).rglob("*.py"))
        if rule_for(p.relative_to(ROOT).as_posix()) is None
    ]
    assert uncovered == []


def test_known_violations_are_still_real():
    """Remove an entry from KNOWN_VIOLATIONS once the restructuring fixed it."""
    stale = [
        (rel, module)
        for rel, module in sorted(KNOWN_VIOLATIONS)
        if not (ROOT / rel).is_file() or module not in {m for _, m in imported_modules(ROOT / rel)}
    ]
    assert stale == []


@pytest.fixture
def fake_root(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "FIRST_PARTY", (*FIRST_PARTY, "pkg"))
    monkeypatch.setitem(RULES, "pkg", Rule(allow=("pkg", "app.rl"), deny=("grpc",)))
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    return tmp_path / "pkg"


def test_the_checker_sees_lazy_imports(fake_root):
    (fake_root / "m.py").write_text("def f():\n    from hardware.guard import RobotGuard\n    import grpc\n")
    assert violations("pkg") == [
        "pkg/m.py:2 imports hardware.guard (not allowed here)",
        "pkg/m.py:3 imports grpc (denied here)",
    ]


def test_the_checker_resolves_relative_imports(fake_root, monkeypatch):
    (fake_root / "sub" / "__init__.py").write_text("from . import a\nfrom .b import c\n")
    (fake_root / "sub" / "m.py").write_text("from ..other import x\nfrom . import y\n")
    (fake_root / "sub" / "bad.py").write_text("def f():\n    from .. import hardware\n")
    assert imported_modules(fake_root / "sub" / "__init__.py") == [(1, "pkg.sub.a"), (2, "pkg.sub.b")]
    assert imported_modules(fake_root / "sub" / "m.py") == [(1, "pkg.other"), (2, "pkg.sub.y")]
    # a relative import is judged by its absolute name: pkg.hardware is inside pkg, so allowed
    assert violations("pkg") == []
    monkeypatch.setitem(RULES, "pkg/sub", Rule(allow=("pkg.sub",)))
    assert violations("pkg") == [
        "pkg/sub/bad.py:2 imports pkg.hardware (not allowed here)",
        "pkg/sub/m.py:1 imports pkg.other (not allowed here)",
    ]
    (fake_root / "up.py").write_text("from .. import app\n")
    with pytest.raises(ValueError, match="beyond the top-level package"):
        violations("pkg")


def test_an_unlisted_first_party_import_fails(fake_root):
    (fake_root / "m.py").write_text(
        "import app.rl.model\nfrom app.rl import sampling\nfrom app.actor.loop import Actor\n"
        "import app.rlx\nimport benchmarks.common\nimport numpy\n"
    )
    assert violations("pkg") == [
        "pkg/m.py:3 imports app.actor.loop (not allowed here)",
        "pkg/m.py:4 imports app.rlx (not allowed here)",
        "pkg/m.py:5 imports benchmarks.common (not allowed here)",
    ]


def test_known_violations_are_skipped_only_for_their_file(fake_root):
    (fake_root / "m.py").write_text("import app.actor\n")
    (fake_root / "n.py").write_text("import app.actor\n")
    assert violations("pkg", {("pkg/m.py", "app.actor")}) == [
        "pkg/n.py:1 imports app.actor (not allowed here)"
    ]


def test_an_exact_rule_allows_the_package_but_not_what_is_below_it(fake_root, monkeypatch):
    monkeypatch.setitem(RULES, "pkg", Rule(allow=("app$",)))
    (fake_root / "m.py").write_text("from app import __version__\nimport app.learner.loop\n")
    assert violations("pkg") == ["pkg/m.py:2 imports app.learner.loop (not allowed here)"]
