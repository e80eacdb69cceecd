"""In-process PI-RL learner for the actor tests: real gRPC on a free loopback port, training in a thread."""

from __future__ import annotations

import threading

import pytest

from app.learner.loop import Learner


class LearnerThread:
    def __init__(self, cfg):
        self.learner = Learner(cfg, progress=None)
        self.port = self.learner.start_server()
        self.thread = threading.Thread(target=self.learner.run, daemon=True)
        self.thread.start()

    def stop(self):
        self.learner.shutdown.set()
        self.thread.join(timeout=30)


@pytest.fixture
def learner(run_config):
    lt = LearnerThread(run_config())
    yield lt
    lt.stop()
