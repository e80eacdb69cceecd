"""The documented way for other test folders to get the simulated-bus fixtures works."""

pytest_plugins = ["tests.mocks.fixtures"]


def test_plugin_fixtures_are_usable(so101_sim, koch_sim, sim_ports, calib_dir):
    assert sim_ports.buses == {so101_sim.port: so101_sim.bus, koch_sim.port: koch_sim.bus}
    assert calib_dir.is_dir()
