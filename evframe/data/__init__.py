"""Data: sequential loading of recordings (Metavision's SequentialDataLoader), label loading hooks, dataset folders
and the embedded synthetic dataset (:mod:`evframe.data.synthetic`)."""

from evframe.data.labels import load_boxes, load_flow, load_labels_stub
from evframe.data.metadata import FileMetadata
from evframe.data.sequential import SequentialDataLoader, SequentialDataset

__all__ = ["FileMetadata", "SequentialDataLoader", "SequentialDataset", "load_boxes", "load_flow",
           "load_labels_stub"]
