"""Dataset folders: ROOT/{train,val,test}/ holding recordings (``*.dat``, ``*.raw``, ``*.hdf5``) or precomputed
tensor files (``*.h5``), with labels beside them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

SPLITS = ("train", "val", "test")
#: precomputed tensors (Metavision layout)
TENSOR_SUFFIXES = (".h5",)
#: event recordings (DAT, RAW EVT 2.0/3.0, HDF5 events: evframe.io.open_events), preprocessed on the fly
EVENT_SUFFIXES = (".dat", ".raw", ".hdf5")
#: label files that share the recording's folder and must not be taken for recordings
LABEL_MARKERS = ("_bbox", "_flow", "_frames")


def list_recordings(root: str | Path, split: str, max_recordings: int | None = None) -> list[Path]:
    """Sorted recordings of one split. Tensor files win over event files of the same recording.

    Raises:
        FileNotFoundError: the split folder is missing (naming it and what was expected inside).
    """
    folder = Path(root) / split
    if not folder.is_dir():
        raise FileNotFoundError(
            f"dataset split folder '{folder}' does not exist: expected {Path(root)}/{{{','.join(SPLITS)}}}/ "
            f"with recordings ({', '.join(EVENT_SUFFIXES + TENSOR_SUFFIXES)})"
        )
    files = [p for p in sorted(folder.iterdir())
             if p.suffix in EVENT_SUFFIXES + TENSOR_SUFFIXES and not any(p.stem.endswith(m) for m in LABEL_MARKERS)]
    tensor_stems = {p.stem for p in files if p.suffix in TENSOR_SUFFIXES}
    files = [p for p in files if p.suffix in TENSOR_SUFFIXES or _stem(p) not in tensor_stems]
    return files[:max_recordings] if max_recordings else files


def split_files(dataset: Mapping[str, Any], split: str) -> list[Path]:
    """The recordings of ``split`` of a dataset config: its ``paths`` / ``val_paths`` / ``test_paths`` when it is a
    list of recordings (``dataset=raw_stream``; val falls back to the training list, test to val then training),
    else the ``root/<split>`` folder (:func:`list_recordings`). At most ``max_recordings`` of them."""
    limit = dataset.get("max_recordings") or None
    if dataset.get("paths"):
        chosen = {"train": dataset["paths"], "val": dataset.get("val_paths") or dataset["paths"],
                  "test": dataset.get("test_paths") or dataset.get("val_paths") or dataset["paths"]}[split]
        return [Path(f) for f in chosen][:limit]
    return list_recordings(dataset["root"], split, limit)


def _stem(path: Path) -> str:
    stem = path.stem
    return stem[:-3] if stem.endswith("_td") else stem


def probe_file_size(path: str | Path) -> tuple[int, int]:
    """(height, width) of the sensor of one recording, from its header or its tensor file's attributes.

    Raises:
        ValueError: the file does not say its sensor size.
    """
    path = Path(path)
    if path.suffix in TENSOR_SUFFIXES:
        from evframe.preprocess.h5_tensors import TensorH5Reader

        reader = TensorH5Reader(path)
        return int(reader.height), int(reader.width)
    from evframe.io import open_events

    reader = open_events(path)
    if reader.height is None or reader.width is None:
        raise ValueError(f"{path}: the header gives no sensor size; set dataset.height and dataset.width in the config")
    return int(reader.height), int(reader.width)


def probe_sensor_size(root: str | Path) -> tuple[int, int]:
    """(height, width) of the first recording found under ``root``.

    Raises:
        FileNotFoundError / ValueError: nothing to probe, or the file does not say its size.
    """
    for split in SPLITS:
        try:
            files = list_recordings(root, split)
        except FileNotFoundError:
            continue
        if files:
            return probe_file_size(files[0])
    raise FileNotFoundError(f"no recording found under '{root}' to read the sensor size from")
