"""Read the tags back from tensorboardX event files (TFRecord framing, tensorboardX's protobufs)."""

import struct
from pathlib import Path

from tensorboardX.proto import event_pb2


def _events(directory: Path):
    for path in Path(directory).glob("events.out.tfevents.*"):
        data = path.read_bytes()
        offset = 0
        while offset + 12 <= len(data):
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            record = data[offset + 12 : offset + 12 + length]
            offset += 12 + length + 4
            event = event_pb2.Event()
            event.ParseFromString(record)
            yield event


def read_tags(directory: Path) -> set[str]:
    return {v.tag for event in _events(directory) for v in event.summary.value}


def read_scalars(directory: Path, tag: str) -> dict[int, float]:
    """A scalar tag's values by step."""
    return {e.step: v.simple_value for e in _events(directory) for v in e.summary.value if v.tag == tag}
