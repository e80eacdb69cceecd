"""pytest plugin module for the simulated servo buses: `pytest_plugins = ["tests.mocks.fixtures"]`.

The fixtures live in tests/mocks/sim_fixtures.py (so/koch arms on simulated ports, a temporary
calibration folder); conftest files import them from there instead.
"""

from tests.mocks.sim_fixtures import calib_dir, koch_sim, sim_ports, so101_sim

__all__ = ["calib_dir", "koch_sim", "sim_ports", "so101_sim"]
