"""Event-camera file I/O: event files (DAT, chosen by content), box and flow labels, frames.

Events are (N,) :data:`EVENT_DTYPE` arrays (x, y, p, t in us); boxes are (N,) :data:`BBOX_DTYPE` arrays. Every file
problem raises :class:`EventFileError` naming the file (and the byte offset when known).
"""

from evframe.io.boxes import load_boxes, load_label_map, save_boxes, save_label_map
from evframe.io.dat import DatReader, write_dat
from evframe.io.dtypes import BBOX_DTYPE, EVENT_DTYPE, empty_boxes, empty_events
from evframe.io.errors import EventFileError
from evframe.io.flow_labels import FlowLabelsReader, write_flow_h5
from evframe.io.formats import load_events, open_events, register_format
from evframe.io.frames import FramesReader, write_frames_h5
from evframe.io.paths import label_path, recording_name

__all__ = [
    "BBOX_DTYPE", "EVENT_DTYPE", "DatReader", "EventFileError", "FlowLabelsReader", "FramesReader", "empty_boxes",
    "empty_events", "label_path", "load_boxes", "load_events", "load_label_map", "open_events", "recording_name",
    "register_format", "save_boxes", "save_label_map", "write_dat", "write_flow_h5", "write_frames_h5",
]
