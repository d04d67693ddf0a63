"""Event-camera simulation: frames in, events out (batched, torch, CPU or CUDA)."""

from evframe.sim.convert import events_to_numpy
from evframe.sim.simulator import EventSimulator
from evframe.sim.video import simulate_video

__all__ = ["EventSimulator", "events_to_numpy", "simulate_video"]
