"""Weights that do not fit the actor's policy are refused before they replace the running ones.

A wrong-shape push used to raise inside the robot loop mid-episode (on a real arm the exit releases
torque: the arm goes limp), and NaN weights loaded silently, after which the safety layer rejected every
action without a word. Now every push is checked (names, shapes, dtypes, finite values; the frozen digest
at the safe point); a bad one is refused, logged and shown on the console until good weights arrive, and
the actor keeps acting with the weights it has.
"""

from __future__ import annotations

import dataclasses
import struct
import threading
import time

import pytest
import torch

from app.actor.loop import Actor
from app.actor.weights import WeightCheck
from app.control.protocol import LearnerLinkStatus
from app.transport.codec import DecodeError, Parameters
from app.transport.params import MAGIC

HAS_ERROR_FIELD = "error" in {f.name for f in dataclasses.fields(LearnerLinkStatus)}


class _Model:
    def __init__(self, state):
        self.state = state

    def trainable_tensors(self):
        return self.state


def _good():
    return {
        "a.weight": torch.randn(4, 3),
        "a.bias": torch.zeros(4),
        "steps": torch.zeros(2, dtype=torch.int64),
    }


def _bad_cases(good: dict[str, torch.Tensor], name: str) -> dict[str, tuple[dict[str, torch.Tensor], str]]:
    """case -> (state, what the refusal must say)."""
    nan, inf = good[name].clone(), good[name].clone()
    nan.view(-1)[0] = float("nan")
    inf.view(-1)[-1] = float("-inf")
    rows, cols = good[name].shape[0], good[name].shape[-1]
    return {
        "wrong shape": (good | {name: torch.zeros(rows + 1, cols)}, "wrong shape"),
        "missing key": ({k: v for k, v in good.items() if k != name}, "missing 1 tensor"),
        "extra key": (good | {"bogus.weight": torch.zeros(2)}, "the model does not have: 'bogus.weight'"),
        "wrong dtype": (good | {name: good[name].double()}, "wrong dtype"),
        "NaN": (good | {name: nan}, "NaN/inf values"),
        "inf": (good | {name: inf}, "NaN/inf values"),
    }


def test_the_check_refuses_each_kind_of_mismatch_and_accepts_bf16_floats():
    good = _good()
    check = WeightCheck(_Model(good))
    check(Parameters(1, good))
    check(Parameters(1, good | {"a.weight": good["a.weight"].bfloat16()}, dtype="bfloat16"))
    for case, (state, says) in _bad_cases(good, "a.weight").items():
        with pytest.raises(DecodeError, match="v7 do not fit") as err:
            check(Parameters(7, state))
        assert says in str(err.value), case
    with pytest.raises(DecodeError, match="wrong dtype: 'steps' is int32"):
        check(Parameters(7, good | {"steps": torch.zeros(2, dtype=torch.int32)}))
    check(
        Parameters(7, good | {"a.bias": torch.full((4,), float("nan"))}), finite=False
    )  # the safe point's cheap pass


def _wait(cond, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.mark.timing  # a live link and learner: run alone (tests/conftest.py)
def test_bad_pushes_are_refused_reported_and_the_actor_keeps_acting_on_its_weights(
    run_config, served_learner
):
    cfg = run_config(
        f"--transport.port={served_learner.port}",
        "--actor.episodes=0",
        "--actor.control.port=0",
        # a refusal must not break the stream (that counts as a loss at once); the silence timeout is long
        # so that a loaded machine's scheduling gaps are not counted as link losses here
        "--safety.link_timeout_s=10",
    )
    lines: list[str] = []
    actor = Actor(cfg, progress=lines.append)
    learner = served_learner
    good = {k: v.detach().clone() for k, v in learner.algorithm.model.trainable_tensors().items()}
    name = next(k for k, v in good.items() if v.ndim == 2 and v.is_floating_point())
    cases = {
        case: Parameters(0, state, base_digest=learner.frozen)
        for case, (state, _) in _bad_cases(good, name).items()
    }
    says = {case: s for case, (_, s) in _bad_cases(good, name).items()}
    cases["another frozen part"] = Parameters(0, good, base_digest="0" * 16)
    says["another frozen part"] = "frozen digest"
    cases["malformed payload"] = None
    says["malformed payload"] = "header is not UTF-8 JSON"
    report: dict[str, object] = {}

    def pusher() -> None:
        try:
            _wait(lambda: actor.version == 0 and actor.env_steps > 10, "the first weights and steps")
            kept = {k: v.clone() for k, v in actor.model.trainable_tensors().items()}
            for version, (case, params) in enumerate(cases.items(), start=1):
                steps = actor.env_steps
                if params is None:
                    learner.service.publish_parameters(version, MAGIC + struct.pack("<I", 5) + b"{bad}")
                else:
                    learner.service.publish_weights(dataclasses.replace(params, version=version))
                _wait(lambda v=version: actor.client.status.weights_refused >= v, f"the refusal of {case}")
                _wait(lambda s=steps: actor.env_steps > s + 30, f"steps after {case}")  # still acting
                time.sleep(0.2)  # the refusal stays visible between pushes
                cs = actor.client.status
                assert says[case] in cs.weights_error, (case, cs.weights_error)
                assert actor.version == 0, case
                status = actor.console.status()
                if HAS_ERROR_FIELD:
                    assert says[case] in status.learner.error, case
                assert status.learner.connected and status.learner.policy_version == 0
                assert any("refused" in line.text for line in status.log), case
            for k, v in actor.model.trainable_tensors().items():
                assert torch.equal(v, kept[k]), f"{k} changed after refused pushes"
            n = len(cases) + 1
            learner.service.publish_weights(
                Parameters(n, {k: v + 0.01 for k, v in good.items()}, base_digest=learner.frozen)
            )
            _wait(lambda: actor.version == n, "the good push")
            report["after_good"] = actor.client.status.weights_error
            if HAS_ERROR_FIELD:
                report["status_error"] = actor.console.status().learner.error
        except BaseException as err:  # noqa: BLE001 - reported by the main thread
            report["error"] = err
        finally:
            actor.shutdown.set()

    t = threading.Thread(target=pusher, daemon=True)
    t.start()
    assert actor.run() == 0
    t.join(timeout=30)
    if "error" in report:
        raise report["error"]
    assert report["after_good"] == ""
    assert report.get("status_error", "") == ""
    assert actor.client.status.weights_refused == len(cases)
    assert actor.link.losses == 0, "a refused push cost the link"
    assert all(r.termination != "link_lost" for r in actor.episodes.records)
    refusals = [line for line in lines if "refused a weights push (keeping v0)" in line]
    assert len(refusals) >= 1
