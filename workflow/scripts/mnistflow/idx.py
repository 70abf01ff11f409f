"""Read and write IDX files, the format the MNIST database is distributed in.

IDX: a big-endian header (two zero bytes, a type code, the number of dimensions, then one
uint32 per dimension) followed by the data. MNIST uses unsigned bytes (type 0x08):
images have magic number 2051 (3 dimensions), labels 2049 (1 dimension).
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10


class IdxError(ValueError):
    """A file that is not the IDX file it should be; the message names the file and the fault."""


def _read_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if data[:2] != b"\x1f\x8b":
        return data  # accept an already decompressed file too
    try:
        return gzip.decompress(data)
    except (EOFError, OSError, zlib.error) as error:
        raise IdxError(f"{path}: corrupt or truncated gzip data ({error})") from error


def read_idx(path: str | Path, expected_magic: int) -> np.ndarray:
    """Parse one (optionally gzipped) IDX file of unsigned bytes, checking its header."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 8:
        raise IdxError(f"{path}: {len(data)} bytes is too short for an IDX header")
    (magic,) = struct.unpack(">I", data[:4])
    if magic != expected_magic:
        raise IdxError(f"{path}: {_wrong_magic(data, magic, expected_magic)}")
    ndim = magic & 0xFF
    header_size = 4 + 4 * ndim
    shape = struct.unpack(f">{ndim}I", data[4:header_size])
    expected_size = header_size + int(np.prod(shape))
    if len(data) != expected_size:
        raise IdxError(
            f"{path}: header declares shape {shape} ({expected_size} bytes) "
            f"but the file has {len(data)} bytes (truncated or padded)"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape)


KINDS = {IMAGES_MAGIC: "images", LABELS_MAGIC: "labels"}


def looks_like_html(data: bytes) -> bool:
    head = data[:512].lstrip().lower()
    return head.startswith(b"<") and any(tag in head for tag in (b"<html", b"<!doctype", b"<head"))


def _wrong_magic(data: bytes, magic: int, expected_magic: int) -> str:
    kind = KINDS[expected_magic]
    if magic in KINDS:  # the other kind of MNIST file
        return (
            f"an IDX {KINDS[magic]} file (magic number {magic}), expected {kind} "
            f"({expected_magic}): labels and images swapped?"
        )
    what = "it looks like an HTML page" if looks_like_html(data) else f"magic number {magic}"
    return f"not an IDX {kind} file ({what}; expected magic number {expected_magic})"


def read_images(path: str | Path) -> np.ndarray:
    images = read_idx(path, IMAGES_MAGIC)
    if images.shape[1:] != IMAGE_SHAPE:
        raise IdxError(f"{path}: images are {images.shape[1:]}, expected {IMAGE_SHAPE}")
    return images


def read_labels(path: str | Path) -> np.ndarray:
    labels = read_idx(path, LABELS_MAGIC)
    if labels.size and labels.max() >= NUM_CLASSES:
        raise IdxError(f"{path}: label {labels.max()} found, labels must be 0-{NUM_CLASSES - 1}")
    return labels


def read_pair(images_path: str | Path, labels_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Images and their labels, checking that the two files belong together."""
    images, labels = read_images(images_path), read_labels(labels_path)
    if len(images) != len(labels):
        raise IdxError(
            f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels"
        )
    return images, labels


def encode_idx(array: np.ndarray) -> bytes:
    """IDX bytes for an array of unsigned bytes (used to cut samples and build test data)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    magic = 0x0800 | array.ndim
    return struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.tobytes()
