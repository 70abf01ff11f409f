import gzip

import numpy as np
import pytest

from mnistflow import idx


def write(path, data: bytes, compress=True):
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def test_round_trip_gzipped_and_plain(tmp_path):
    images = np.arange(3 * 28 * 28, dtype=np.uint32).reshape(3, 28, 28).astype(np.uint8)
    labels = np.array([0, 9, 4], dtype=np.uint8)
    got_images, got_labels = idx.read_pair(
        write(tmp_path / "i.gz", idx.encode_idx(images)),
        write(tmp_path / "l", idx.encode_idx(labels), compress=False),
    )
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


def test_labels_file_given_as_images_names_the_file_and_magic(tmp_path):
    labels = write(tmp_path / "train-labels-idx1-ubyte.gz", idx.encode_idx(np.zeros(5, np.uint8)))
    with pytest.raises(
        idx.IdxError,
        match=r"labels-idx1-ubyte.gz: an IDX labels file \(magic number 2049\), expected images",
    ):
        idx.read_images(labels)


def test_wrong_image_size(tmp_path):
    path = write(tmp_path / "x.gz", idx.encode_idx(np.zeros((2, 32, 32), np.uint8)))
    with pytest.raises(idx.IdxError, match=r"x.gz: images are \(32, 32\), expected \(28, 28\)"):
        idx.read_images(path)


def test_truncated_payload(tmp_path):
    data = idx.encode_idx(np.zeros((4, 28, 28), np.uint8))[:-100]
    with pytest.raises(idx.IdxError, match="truncated or padded"):
        idx.read_images(write(tmp_path / "short.gz", data))


def test_truncated_gzip_stream(tmp_path):
    data = gzip.compress(idx.encode_idx(np.zeros((4, 28, 28), np.uint8)))
    path = tmp_path / "cut.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(idx.IdxError, match="cut.gz: corrupt or truncated gzip"):
        idx.read_images(path)


def test_label_out_of_range(tmp_path):
    path = write(tmp_path / "l.gz", idx.encode_idx(np.array([1, 10], np.uint8)))
    with pytest.raises(idx.IdxError, match="label 10 found, labels must be 0-9"):
        idx.read_labels(path)


def test_count_mismatch_names_both_files(tmp_path):
    images = write(tmp_path / "i.gz", idx.encode_idx(np.zeros((3, 28, 28), np.uint8)))
    labels = write(tmp_path / "l.gz", idx.encode_idx(np.zeros(2, np.uint8)))
    with pytest.raises(idx.IdxError, match=r"i.gz has 3 images but .*l.gz has 2 labels"):
        idx.read_pair(images, labels)
