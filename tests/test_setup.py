"""scripts/venv.sh: every clone runs its own code from its own `.venv` layer over the shared package cache.

The heavy cached venv is never touched here: the tests build a *shadow* cache in tmp_path (a tiny venv
whose site-packages points at the real cache's), run copies of the repository's set-up against it and
look at what each clone's `.venv` runs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# What a clone needs for its set-up and to run `pirl` (docs, configs and tests are not needed here).
CLONE_PARTS = ("scripts", "plugins", "app", "hardware", "calibration", "requirements.lock", "pyproject.toml")


def _lock_hash(lock: Path) -> str:
    """The cache key venv.sh computes: sha256 of the lock file plus the salt line, 16 hex digits."""
    salt = os.environ.get("PIRL_VENV_SALT", "v1")
    return hashlib.sha256(lock.read_bytes() + f"{salt}\n".encode()).hexdigest()[:16]


def _purelib(venv: Path) -> Path:
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, timeout=60
    )
    return Path(out.stdout.strip())


def _cache_venv() -> Path:
    """The heavy venv this test runs on: named in the layer's stamp, or this interpreter's own venv."""
    stamp = Path(sys.prefix) / ".pirl-layer"
    if stamp.is_file():
        for line in stamp.read_text().splitlines():
            if line.startswith("cache="):
                return Path(line.removeprefix("cache="))
    return Path(sys.prefix)


def _shadow_cache(root: Path) -> Path:
    """A complete-looking cache venv at root/<hash> that borrows the real cache's packages and commands."""
    venv = root / _lock_hash(REPO / "requirements.lock")
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = _purelib(venv)
    real = _cache_venv()
    real_site = sysconfig.get_paths(vars={"base": str(real), "platbase": str(real)})["purelib"]
    (site / "_real.pth").write_text(
        "import site; site.addsitedir(%r)\n" % real_site  # noqa: UP031 - the .pth line is Python
    )
    real_bin = real / "bin"
    for name in ("pytest", "py.test", "ruff", "lerobot-eval"):
        target = real_bin / name
        if target.exists():
            (venv / "bin" / name).symlink_to(target.resolve())
    (venv / ".pirl-complete").touch()
    return venv


def _clone(dest: Path, marker: str) -> Path:
    """A copy of the files a clone needs, with app/_marker.py telling the copies apart."""
    dest.mkdir(parents=True)
    for part in CLONE_PARTS:
        src = REPO / part
        if src.is_dir():
            shutil.copytree(
                src, dest / part, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
            )
        else:
            shutil.copy2(src, dest / part)
    (dest / "app" / "_marker.py").write_text(f"NAME = {marker!r}\n")
    return dest


def _setup(clone: Path, cache_root: Path, **env: str) -> subprocess.CompletedProcess:
    full = dict(os.environ, PIRL_VENV_CACHE=str(cache_root), **env)
    full.pop("PYTHONPATH", None)
    return subprocess.run(
        ["bash", str(clone / "scripts" / "venv.sh")], capture_output=True, text=True, timeout=300, env=full
    )


def _run(argv: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=cwd, env=env, **kw)


WHO = "import app, app._marker; print(app.__file__); print(app._marker.NAME)"


@pytest.fixture
def shadow(tmp_path) -> Path:
    return _shadow_cache(tmp_path / "cache")


def test_two_clones_each_run_their_own_code(tmp_path, shadow):
    cache_root = shadow.parent
    site = _purelib(shadow)
    (site / "_pirl_clone.pth").write_text("/somewhere/else\n")  # what the old set-up left in the cache
    a, b = _clone(tmp_path / "a", "clone-a"), _clone(tmp_path / "b", "clone-b")
    (a / ".venv").symlink_to(shadow)  # the old layout: .venv linked to the shared cache
    for clone in (a, b):
        out = _setup(clone, cache_root)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == str(clone / ".venv")
    assert not (site / "_pirl_clone.pth").exists(), "nothing clone-specific may stay in the shared cache"
    assert shadow.is_dir() and (shadow / ".pirl-complete").exists(), "replacing the old link kept the cache"
    for clone, marker in ((a, "clone-a"), (b, "clone-b")):
        venv = clone / ".venv"
        assert venv.is_dir() and not venv.is_symlink()
        # run from elsewhere: the layer itself (not the working directory) decides whose code runs
        who = _run([str(venv / "bin" / "python"), "-c", WHO], tmp_path)
        assert who.returncode == 0, who.stderr
        assert who.stdout.split() == [str(clone / "app" / "__init__.py"), marker]
        pirl = _run([str(venv / "bin" / "pirl"), "--version"], tmp_path)
        assert pirl.returncode == 0 and pirl.stdout.startswith("pirl "), pirl.stderr
        # the cached venv's commands run through the layer: pytest and LeRobot's tools see this clone
        head = (venv / "bin" / "pytest").read_text().splitlines()[0]
        assert head == f"#!{venv}/bin/python"
        assert _run([str(venv / "bin" / "python"), "-m", "pytest", "--version"], tmp_path).returncode == 0
        assert _run([str(venv / "bin" / "ruff"), "--version"], tmp_path).returncode == 0
        # `source .venv/bin/activate` puts this clone's `pirl` on PATH (README)
        act = _run(
            ["bash", "-c", f"source {venv}/bin/activate && command -v pirl && pirl --version"], tmp_path
        )
        assert act.returncode == 0, act.stderr
        assert act.stdout.splitlines()[0] == str(venv / "bin" / "pirl")


def test_second_run_keeps_the_layer_and_a_moved_clone_gets_a_new_one(tmp_path, shadow):
    clone = _clone(tmp_path / "a", "moved")
    assert _setup(clone, shadow.parent).returncode == 0
    stamp = clone / ".venv" / ".pirl-layer"
    before = stamp.stat().st_mtime_ns
    assert _setup(clone, shadow.parent).returncode == 0
    assert stamp.stat().st_mtime_ns == before, "an up-to-date layer is not rebuilt"
    moved = clone.rename(tmp_path / "b")
    out = _setup(moved, shadow.parent)
    assert out.returncode == 0, out.stderr
    who = _run([str(moved / ".venv" / "bin" / "python"), "-c", WHO], tmp_path)
    assert who.stdout.split() == [str(moved / "app" / "__init__.py"), "moved"], who.stderr


def test_incomplete_cache_is_rebuilt_not_used(tmp_path):
    """A cache venv without its completion mark (an interrupted install) is never used: venv.sh starts
    over, here failing early because this fake machine has no Python at all."""
    clone = _clone(tmp_path / "a", "x")
    cache = tmp_path / "cache" / _lock_hash(clone / "requirements.lock")
    (cache / "bin").mkdir(parents=True)
    (cache / "bin" / "python").symlink_to(sys.executable)
    tools = tmp_path / "tools"
    tools.mkdir()
    for tool in ("cat", "sha256sum", "cut", "dirname"):
        (tools / tool).symlink_to(shutil.which(tool))
    out = subprocess.run(
        [shutil.which("bash"), str(clone / "scripts" / "venv.sh")],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": str(tools), "HOME": str(tmp_path), "PIRL_VENV_CACHE": str(cache.parent)},
    )
    assert out.returncode == 2 and "no Python >= 3.12 found" in out.stderr
    assert not (clone / ".venv").exists()


def test_concurrent_setups_of_one_clone_build_one_layer(tmp_path, shadow):
    """`make check` started beside `make demo` on a fresh clone: one builds the layer, the other waits."""
    clone = _clone(tmp_path / "a", "both")
    env = dict(os.environ, PIRL_VENV_CACHE=str(shadow.parent))
    env.pop("PYTHONPATH", None)
    runs = [
        subprocess.Popen(
            ["bash", str(clone / "scripts" / "venv.sh")], stdout=subprocess.PIPE, env=env, text=True
        )
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=300)[0].strip() for p in runs]
    assert [p.returncode for p in runs] == [0, 0, 0] and set(outs) == {str(clone / ".venv")}
    who = _run([str(clone / ".venv" / "bin" / "python"), "-c", WHO], tmp_path)
    assert who.stdout.split() == [str(clone / "app" / "__init__.py"), "both"], who.stderr


def test_a_venv_that_is_not_pirls_is_moved_aside(tmp_path, shadow):
    clone = _clone(tmp_path / "a", "x")
    (clone / ".venv").mkdir()
    (clone / ".venv" / "mine.txt").write_text("keep me")
    out = _setup(clone, shadow.parent)
    assert out.returncode == 0 and "moved to" in out.stderr
    (aside,) = clone.glob(".venv.old-*")
    assert (aside / "mine.txt").read_text() == "keep me"
    assert (clone / ".venv" / ".pirl-layer").is_file()
