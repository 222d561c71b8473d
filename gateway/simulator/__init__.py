"""A faithful fake of Plivo's Verify Session API, for the demo, the tests and the benchmarks."""

from gateway.simulator.app import SimulatorSettings, create_simulator

__all__ = ["SimulatorSettings", "create_simulator"]
