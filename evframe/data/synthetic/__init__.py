"""Procedural event-camera dataset generated locally (nothing downloaded): textured objects of several classes
moving over a textured background seen by a moving camera, rendered finely in time and converted to events by
:mod:`evframe.sim`, with exact boxes, dense optical flow and grayscale frames.

``ensure_dataset(root, preset="tiny"|"default", seed=0)`` generates once and caches; ``generate`` always writes.
"""

from evframe.data.synthetic.cache import ensure_dataset, is_current
from evframe.data.synthetic.config import PRESETS, SyntheticConfig, get_config
from evframe.data.synthetic.generate import STAMP_NAME, generate, read_stamp, recording_name

__all__ = ["PRESETS", "STAMP_NAME", "SyntheticConfig", "ensure_dataset", "generate", "get_config", "is_current",
           "read_stamp", "recording_name"]
