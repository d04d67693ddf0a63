"""Real RAW recordings from ../shared/realdata (EVT 2.0 and 3.0; skipped when absent).

The pinned values were cross-checked when written: x, y, p and t of every file equal the decodes of the `evt3`
(0.4.1, EVT 3.0) and `expelliarmus` (1.1.12, EVT 2.0; its EVT 3.0 times are known to be wrong, see the MANIFEST)
packages; the optional test at the end repeats that comparison when those packages are installed.
"""

import warnings
from pathlib import Path

import numpy as np
import pytest

from evframe.io import RawReader, load_events, open_events, write_hdf5_events

pytestmark = pytest.mark.realdata
REALDATA = Path(__file__).resolve().parents[2].parent / "shared" / "realdata"


@pytest.fixture
def realdata() -> Path:
    """The shared real-data folder (this package's conftest narrows `realdata` to its DAT sub-folder)."""
    if not (REALDATA / "prophesee_evt3").is_dir():
        pytest.skip(f"real recordings absent ({REALDATA})")
    return REALDATA

# file: (count, x min, x max, y min, y max, t min, t max), (sum x, sum y, sum p, sum t), (height, width), words
PINS = {
    "prophesee_evt2/gen3_640x480_a.raw": ((539481, 60, 599, 18, 475, 1317888, 1367888),
                                          (171811022, 110162026, 367855, 724340275912), (480, 640), 542607),
    "prophesee_evt2/gen3_640x480_b.raw": ((521252, 0, 639, 0, 479, 913716224, 913812095),
                                          (128979953, 216346680, 185861, 476298094656969), (480, 640), 527244),
    "prophesee_evt3/imx636_1280x720_a.raw": ((219596, 0, 1279, 0, 719, 11718656, 11727457),
                                             (159113225, 85638051, 115532, 2574324900467), (720, 1280), 308943),
    "prophesee_evt3/imx636_1280x720_b.raw": ((5000, 11, 1279, 22, 698, 5840504, 5885714),
                                             (3415152, 1425333, 2894, 29310165280), (720, 1280), 18377),
    "prophesee_evt3/triggers_1280x720.raw": ((82469, 0, 1279, 0, 719, 14224870, 15476187),
                                             (42078718, 31656267, 41439, 1222326831810), (720, 1280), 379148),
}


@pytest.mark.parametrize("name", sorted(PINS))
def test_raw_sample_decodes_to_pinned_values(realdata, name):
    stats, sums, size, words = PINS[name]
    path = realdata / name
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # real streams decode without any dropped or skipped word
        reader = open_events(path)
        events = reader.load_all()
    assert isinstance(reader, RawReader) and (reader.height, reader.width) == size and reader.word_count == words
    assert (len(events), events["x"].min(), events["x"].max(), events["y"].min(), events["y"].max(),
            events["t"].min(), events["t"].max()) == stats
    assert tuple(int(events[f].astype(np.int64).sum()) for f in ("x", "y", "p", "t")) == sums
    assert np.all(np.diff(events["t"]) >= 0) and set(np.unique(events["p"]).tolist()) == {0, 1}
    assert (reader.event_count, reader.duration, reader.start_time) == (stats[0], stats[6], stats[5])


@pytest.mark.parametrize("name", ["prophesee_evt2/gen3_640x480_b.raw", "prophesee_evt3/imx636_1280x720_a.raw"])
def test_raw_sample_streamed_in_small_segments_and_windows(realdata, name):
    whole = load_events(realdata / name)
    reader = RawReader(realdata / name, segment_words=1000)  # hundreds of segment boundaries
    reader.seek_time(reader.start_time)
    parts = []
    while not reader.done:
        parts.append(reader.load_delta_t(2000))
    assert np.array_equal(np.concatenate(parts), whole)
    t_mid = int(whole["t"][len(whole) // 3])
    reader.seek_time(t_mid)
    t = whole["t"]
    assert np.array_equal(reader.load_delta_t(7000), whole[(t >= t_mid) & (t < t_mid + 7000)])


def test_triggers_sample(realdata):
    reader = RawReader(realdata / "prophesee_evt3/triggers_1280x720.raw")
    assert reader.load_all_triggers().tolist() == [(0, 14547491, 0), (1, 14549491, 0)]
    reader.seek_time(14_540_000)
    reader.load_delta_t(8000)
    assert reader.get_ext_trigger_events().tolist() == [(0, 14547491, 0)]


def test_raw_to_hdf5_round_trip(realdata, tmp_path):
    events = load_events(realdata / "prophesee_evt3/imx636_1280x720_b.raw")
    write_hdf5_events(tmp_path / "b.hdf5", events, 720, 1280, compression="blosc")
    assert np.array_equal(load_events(tmp_path / "b.hdf5"), events)


@pytest.mark.parametrize("name", sorted(PINS))
def test_same_events_as_other_decoders(realdata, name):
    """Independent decoders from PyPI (optional: installed only for the benchmark comparison)."""
    events = load_events(realdata / name)
    if "evt3" in name:
        evt3 = pytest.importorskip("evt3")
        other = evt3.decode_file(str(realdata / name))
        columns = {"x": other.x, "y": other.y, "p": other.polarity, "t": other.timestamp}
    else:
        expelliarmus = pytest.importorskip("expelliarmus")
        other = expelliarmus.Wizard(encoding="evt2").read(str(realdata / name))
        columns = {f: other[f] for f in ("x", "y", "p", "t")}
    for field, values in columns.items():
        assert np.array_equal(np.asarray(values).astype(np.int64), events[field].astype(np.int64)), field
