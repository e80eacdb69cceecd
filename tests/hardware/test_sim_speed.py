"""hardware.sim.speed: the measuring tool behind the steps/s numbers in docs/simulation.md."""

from __future__ import annotations

import pytest

from hardware.sim import speed


def test_measure_times_real_steps_state_only_and_with_a_camera(capsys):
    assert speed.main(["--steps", "5", "--camera", "0", "32", "--guard"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4  # raw and guarded, state-only and one camera
    assert "state-only" in lines[0] and "one 32x32 camera" in lines[1] and "guarded" in lines[3]
    for line in lines:
        rate = float(line.split("steps/s")[0].split()[-1])
        assert rate > 0 and "load average" in line


def test_bad_arguments_are_refused():
    with pytest.raises(SystemExit):
        speed.main(["--steps", "0"])
