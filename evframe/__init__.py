"""evframe: an experiment framework for event-camera machine learning.

Event streams -> tensors -> recurrent networks trained with PyTorch Lightning, every experiment composed
from Hydra YAML. See the README for the commands and the config tree.
"""

__version__ = "0.1.0"
