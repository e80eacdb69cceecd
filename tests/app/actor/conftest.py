"""Learners for the actor tests: real gRPC on a free loopback port, training in a thread (`learner`) or
serving only (`served_learner`)."""

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


@pytest.fixture
def served_learner(run_config):
    """A real learner's gRPC server (its service and v0 weights) without the training loop: only what the
    test pushes reaches the actor, and rollouts are accepted but never trained on."""
    learner = Learner(run_config(), progress=None)
    learner.start_server()
    yield learner
    learner.shutdown.set()
    learner.server.stop(grace=None)
