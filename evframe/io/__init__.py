"""Event-camera file I/O: event files (DAT, RAW EVT 2.0/3.0, HDF5 events; chosen by content), box and flow labels,
frames.

Events are (N,) :data:`EVENT_DTYPE` arrays (x, y, p, t in us); external triggers :data:`TRIGGER_DTYPE`; boxes are
(N,) :data:`BBOX_DTYPE` arrays. Every file problem raises :class:`EventFileError` naming the file (and the byte offset
when known), or, for RAW streams decoded as far as they are valid, warns with counts and offsets. The event readers
check their arguments the same way (:func:`evframe.io._args.check_int`): TypeError for anything but an int or numpy
integer, ValueError for a value outside the argument's range (e.g. a negative ``seek_time``).
"""

from evframe.io.boxes import load_boxes, load_label_map, save_boxes, save_label_map
from evframe.io.dat import DatReader, write_dat
from evframe.io.dtypes import BBOX_DTYPE, EVENT_DTYPE, TRIGGER_DTYPE, empty_boxes, empty_events
from evframe.io.errors import EventFileError
from evframe.io.flow_labels import FlowLabelsReader, write_flow_h5
from evframe.io.formats import load_events, open_events, register_format
from evframe.io.frames import FramesReader, write_frames_h5
from evframe.io.hdf5_events import Hdf5EventsReader, is_hdf5_event_file, write_hdf5_events
from evframe.io.paths import label_path, recording_name
from evframe.io.raw import RawReader
from evframe.io.raw_writer import write_raw

__all__ = [
    "BBOX_DTYPE", "EVENT_DTYPE", "TRIGGER_DTYPE", "DatReader", "EventFileError", "FlowLabelsReader", "FramesReader",
    "Hdf5EventsReader", "RawReader", "empty_boxes", "empty_events", "is_hdf5_event_file", "label_path", "load_boxes",
    "load_events", "load_label_map", "open_events", "recording_name", "register_format", "save_boxes",
    "save_label_map", "write_dat", "write_flow_h5", "write_frames_h5", "write_hdf5_events", "write_raw",
]
