"""ParameterStaging: pushes reuse one buffer, a lent buffer is never rewritten, nothing leaks."""

from __future__ import annotations

import gc
import threading
import weakref

import torch

from app.actor.staging import ParameterStaging, StagingBuffer
from app.transport.params import Parameters

N = 64


def push(staging: ParameterStaging, version: int, value: float) -> StagingBuffer:
    """What the receive thread does: acquire, fill, complete."""
    buf = staging.acquire(N)
    view = torch.frombuffer(buf, dtype=torch.float32, count=N // 4)
    view.fill_(value)
    staging.complete(Parameters(version, {"w": view}), buf)
    return buf


def test_a_prompt_actor_reuses_one_buffer_for_every_push():
    s = ParameterStaging()
    first = push(s, 0, 1.0)
    for v in range(1, 4):
        p = s.take(newer_than=v - 2 if v > 1 else None)  # the version the model has
        assert p is not None and p.version == v - 1
        s.release(p.version)
        assert s.take() is None and s.buffers_held == 1  # the spare, nothing else
        assert push(s, v, float(v)) is first


def test_a_lent_buffer_is_not_rewritten_until_released_and_then_reused():
    s = ParameterStaging()
    a = push(s, 0, 1.0)
    held = s.take()
    b = push(s, 1, 2.0)  # arrives while the robot loop still reads v0
    assert b is not a and torch.equal(held.state["w"], torch.full((N // 4,), 1.0))
    assert s.take(newer_than=0).version == 1  # latest wins
    c = push(s, 2, 3.0)  # v1 was taken too: neither lent buffer is written
    assert c is not a and c is not b
    assert torch.equal(held.state["w"], torch.full((N // 4,), 1.0))
    s.release(0)  # an older version: the ready v2 is kept
    assert s.take(newer_than=1).version == 2
    assert s.acquire(N) is a  # v0's buffer is the spare now


def test_an_untaken_push_is_overwritten_by_a_newer_one_rather_than_allocating():
    s = ParameterStaging()
    a = push(s, 0, 1.0)
    assert s.acquire(N) is a  # nobody took v0: the arriving push supersedes it
    assert s.take() is None  # until the new push is complete
    s.discard(a)  # the push was cut off: the buffer is the spare, not lost
    assert s.acquire(N) is a


def test_a_caller_that_never_releases_leaks_nothing():
    s = ParameterStaging()
    refs = []
    for v in range(4):
        refs.append(weakref.ref(push(s, v, float(v))))
        assert s.take() is not None  # taken (lent), never released
    gc.collect()
    assert [r() is None for r in refs] == [True, True, True, False]  # only the ready one is held
    assert s.buffers_held == 1


def test_a_too_small_spare_is_replaced():
    s = ParameterStaging()
    small = s.acquire(8)
    s.discard(small)
    assert len(s.acquire(N)) == N and s.acquire(4) is not small


def test_wait_returns_a_push_or_gives_up_when_stopped():
    s = ParameterStaging()
    stop = threading.Event()
    assert s.wait(0.01, stop.is_set) is None
    threading.Timer(0.05, push, (s, 5, 1.0)).start()
    got = s.wait(5.0, stop.is_set)
    assert got is not None and got.version == 5
    s.release(5)
    threading.Timer(0.05, lambda: (stop.set(), s.close())).start()
    assert s.wait(5.0, stop.is_set) is None
