"""Damaged model files: bytes flipped inside a tensor of a ``torch.save`` archive (the zip stays readable)."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path


def flip_tensor_bytes(path: Path, n: int = 4) -> str:
    """Invert ``n`` bytes in the middle of the largest tensor stored in ``path``; return that member's name.

    ``torch.load`` does not check the zip's CRCs, so the file still loads, with one tensor silently changed.
    """
    data = bytearray(Path(path).read_bytes())
    with zipfile.ZipFile(path) as archive:
        tensors = [i for i in archive.infolist() if "/data/" in i.filename and not i.filename.endswith(".pkl")]
        largest = max(tensors, key=lambda i: i.file_size)
    name_len, extra_len = struct.unpack("<HH", data[largest.header_offset + 26 : largest.header_offset + 30])
    middle = largest.header_offset + 30 + name_len + extra_len + largest.file_size // 2
    for i in range(middle, middle + n):
        data[i] ^= 0xFF
    Path(path).write_bytes(bytes(data))
    return largest.filename
