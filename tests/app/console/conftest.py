"""Console tests keep the control channel's token files out of the real runtime directory."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _private_token_dir(tmp_path_factory, monkeypatch):
    """Actors write, and consoles (in-process or started as subprocesses) read, `control-*.token` under
    `$XDG_RUNTIME_DIR/pirl`: a fresh directory per test instead of the user's."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path_factory.mktemp("xdg_runtime")))
