"""`pirl eval` with a leader arm: Enter on the terminal hands the arm to the leader and back (a leader arm
has no intervention button), only while an episode runs."""

from __future__ import annotations

import os
import sys
import time

from app.eval.runner import EnterToggles


class Spy:
    def __init__(self) -> None:
        self.requests: list[bool] = []

    def request(self, active: bool) -> None:
        self.requests.append(active)


def _wait_for(cond, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def test_each_enter_toggles_the_takeover_on_a_terminal(monkeypatch):
    master, slave = os.openpty()
    tty = os.fdopen(slave, "r")
    monkeypatch.setattr(sys, "stdin", tty)
    spy = Spy()
    try:
        with EnterToggles(spy, enabled=True) as keys:
            assert keys.enabled
            os.write(master, b"\n")
            assert _wait_for(lambda: spy.requests == [True])
            os.write(master, b"\n")
            assert _wait_for(lambda: spy.requests == [True, False])
        os.write(master, b"\n")  # between episodes the key is not read: the operator prompts get it
        time.sleep(0.2)
        assert spy.requests == [True, False]
    finally:
        tty.close()
        os.close(master)


def test_without_a_leader_or_a_terminal_nothing_is_read(monkeypatch):
    spy = Spy()
    with EnterToggles(spy, enabled=False) as keys:
        assert not keys.enabled
    r, w = os.pipe()
    with os.fdopen(r, "r") as pipe:
        monkeypatch.setattr(sys, "stdin", pipe)
        with EnterToggles(spy, enabled=True) as keys:
            assert not keys.enabled  # not a terminal (CI, a script): never steals stdin
    os.close(w)
    assert spy.requests == []
