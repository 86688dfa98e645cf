"""Read the tags back from tensorboardX event files (TFRecord framing, tensorboardX's protobufs)."""

import struct
from pathlib import Path

from tensorboardX.proto import event_pb2


def read_tags(directory: Path) -> set[str]:
    tags = set()
    for path in Path(directory).glob("events.out.tfevents.*"):
        data = path.read_bytes()
        offset = 0
        while offset + 12 <= len(data):
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            record = data[offset + 12 : offset + 12 + length]
            offset += 12 + length + 4
            event = event_pb2.Event()
            event.ParseFromString(record)
            tags.update(v.tag for v in event.summary.value)
    return tags
