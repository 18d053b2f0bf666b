"""An ONNX file's metadata read straight from its protobuf bytes, with neither onnx nor onnxruntime.

Why: `facetune models` lists the exports beside each checkpoint and says whether each is current,
and it stays a fast, light command (it imports no runtime). ModelProto keeps `metadata_props`
(field 14, key = 1, value = 2) at its top level, so a scan of the top-level fields finds it,
skipping over the graph's bytes.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

METADATA_FIELD = 14


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, bytes | int]]:
    """(field number, value) for each field of one protobuf message, in order."""
    out: list[tuple[int, bytes | int]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            out.append((number, value))
        elif wire == 2:
            size, pos = _varint(data, pos)
            if pos + size > len(data):
                raise ValueError("truncated field")
            out.append((number, data[pos : pos + size]))
            pos += size
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
    return out


def read_onnx_metadata(path: str | Path) -> dict[str, str]:
    """The file's metadata as a dict; raises ValueError for a file that is not a protobuf message."""
    props = {}
    for number, value in _fields(Path(path).read_bytes()):
        if number == METADATA_FIELD and isinstance(value, bytes):
            entry = {n: v for n, v in _fields(value) if isinstance(v, bytes)}
            props[entry.get(1, b"").decode("utf-8", "replace")] = entry.get(2, b"").decode("utf-8", "replace")
    return props
