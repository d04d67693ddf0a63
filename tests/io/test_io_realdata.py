"""Real recordings from ../shared/realdata (skipped when absent)."""

import numpy as np
import pytest

from evframe.io import EVENT_DTYPE, DatReader, load_events, open_events

pytestmark = pytest.mark.realdata


def test_atis_crop_sample_matches_reference_decode(realdata):
    reference = np.load(realdata / "atis_crop_sample.reference.npy")
    # The reference is another project's own decode: check its layout before comparing field by field.
    assert reference.dtype.names == ("t", "x", "y", "p")
    assert [reference.dtype[f].kind for f in reference.dtype.names] == ["i", "i", "i", "u"]
    events = load_events(realdata / "atis_crop_sample.dat")
    assert events.dtype == EVENT_DTYPE and len(events) == len(reference) == 4407
    for field in ("t", "x", "y", "p"):
        assert np.array_equal(events[field].astype(np.int64), reference[field].astype(np.int64)), field


def test_atis_header_and_slicing(realdata):
    reader = open_events(realdata / "atis_crop_sample.dat")
    assert isinstance(reader, DatReader)
    assert reader.header == {"Data": "file containing N9Chronocam7Event2dE events.", "Version": "2",
                             "Date": "2017-10-31 11:27:54"}
    assert (reader.height, reader.width, reader.event_type, reader.duration) == (None, None, "Event2D", 99937)
    everything = reader.load_all()
    reader.seek_time(50_000)
    window = reader.load_delta_t(10_000)
    t = everything["t"]
    assert np.array_equal(window, everything[(t >= 50_000) & (t < 60_000)]) and len(window) > 0


def test_ncars_sample_regression_pins(realdata):
    events = load_events(realdata / "ncars_sample.dat")
    # Values measured once from this file (regression pins); the crop is 78 x 42 pixels, 0.1 s long.
    assert len(events) == 2009
    assert (events["x"].min(), events["x"].max(), events["y"].min(), events["y"].max()) == (0, 77, 0, 41)
    assert (events["t"].min(), events["t"].max()) == (0, 99952)
    assert int(events["p"].sum()) == 1350
    assert set(np.unique(events["p"]).tolist()) == {0, 1}
    # A sensor size just large enough passes validation; one pixel smaller is caught.
    DatReader(realdata / "ncars_sample.dat", height=42, width=78).validate()
    with pytest.raises(ValueError, match="x=77 out of range"):
        DatReader(realdata / "ncars_sample.dat", height=42, width=77).validate()
