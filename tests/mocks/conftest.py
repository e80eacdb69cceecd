"""The simulated-bus fixtures for the mocks' own tests."""

from tests.mocks.sim_fixtures import calib_dir, koch_sim, sim_ports, so101_sim  # noqa: F401
