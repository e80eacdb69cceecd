"""hardware/watchdog.py on an injected clock: a stale action source expires, a silent learner link is lost."""

from __future__ import annotations

import pytest

from hardware.watchdog import ActionWatchdog, LinkWatchdog


def test_action_watchdog_expires_without_fresh_actions_and_forgets_on_clear():
    t = [0.0]
    wd = ActionWatchdog(0.5, clock=lambda: t[0])
    assert wd.expired() and wd.age() is None  # nothing ever came
    wd.feed()
    t[0] = 0.4
    assert not wd.expired() and wd.age() == pytest.approx(0.4)
    t[0] = 0.6
    assert wd.expired()
    wd.feed()
    wd.clear()
    assert wd.expired() and wd.age() is None
    with pytest.raises(ValueError, match="> 0"):
        ActionWatchdog(0.0)


def test_link_watchdog_loses_on_events_or_silence_and_counts_each_loss_once():
    t = [0.0]
    link = LinkWatchdog(timeout_s=5.0, clock=lambda: t[0], start_ok=False)
    assert not link.ok and link.reason == "not connected yet" and link.losses == 0  # never up: no loss
    link.heartbeat()
    assert link.ok and link.reason == ""
    link.lost("stream broke")
    link.lost("stream broke again")
    assert not link.ok and link.reason == "stream broke again" and link.losses == 1
    link.restored()
    assert link.poll()
    t[0] = 5.5
    assert not link.poll() and "no message from the learner for 5.5 s" in link.reason
    assert not link.poll() and link.losses == 2
    link.heartbeat()
    assert link.ok and link.losses == 2


def test_link_watchdog_times_silence_from_when_traffic_arrived():
    t = [10.0]
    link = LinkWatchdog(timeout_s=2.0, clock=lambda: t[0], start_ok=False)
    link.heartbeat(at=9.5)  # a reply that arrived 0.5 s ago
    assert link.ok and link.silence() == pytest.approx(0.5)
    t[0] = 11.6
    assert not link.poll() and "for 2.1 s" in link.reason and link.losses == 1
    link.heartbeat(at=9.0)  # an older timestamp never moves the last heartbeat back
    assert not link.ok
    link.heartbeat()
    assert link.ok
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="link timeout"):
            LinkWatchdog(timeout_s=bad)
