"""Download and verification, against a real HTTP server on 127.0.0.1 (see http_mirror.py)."""

from __future__ import annotations

import gzip
import hashlib
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from mnistflow import datasets, download, idx
from mnistflow.datasets import IDX_FILENAMES, IDX_ROLES, DataFile, Dataset, get_dataset
from mnistflow.download import (
    DownloadError,
    VerificationError,
    fetch_dataset,
    fetch_file,
    verify,
)

SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
NAME = "train-labels-idx1-ubyte.gz"
FAST = {"retries": 2, "backoff_s": 0.01, "timeout_s": 5.0}


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes: zero, zero, type 0x08, ndim, one big-endian uint32 per dim."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_gz(directory: Path, filename: str, raw: bytes) -> DataFile:
    """Write ``raw`` gzipped into ``directory``; return the DataFile that describes it."""
    gz = gzip.compress(raw, compresslevel=9, mtime=0)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / filename).write_bytes(gz)
    return DataFile(filename, raw_md5=md5(raw), gz_md5=md5(gz), raw_size=len(raw))


def synthetic_raw(role: str, count: int = 20, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    if role.endswith("images"):
        return idx_bytes(rng.integers(0, 256, size=(count, 28, 28)))
    return idx_bytes(rng.integers(0, 10, size=count))


@pytest.fixture
def mirror_dir(tmp_path) -> Path:
    return tmp_path / "mirror"


@pytest.fixture
def labels(mirror_dir) -> DataFile:
    """One small labels file in mirror_dir."""
    return write_gz(mirror_dir, NAME, synthetic_raw("train_labels"))


@pytest.fixture
def synthetic(mirror_dir) -> Dataset:
    """A four-file data set in mirror_dir, with no default mirrors."""
    files = {
        role: write_gz(mirror_dir, IDX_FILENAMES[role], synthetic_raw(role)) for role in IDX_ROLES
    }
    return Dataset("synthetic", files, (), datasets.DIGIT_NAMES, "made up for the tests")


@pytest.fixture
def dest(tmp_path) -> Path:
    return tmp_path / "out" / NAME


class Log(list):
    def __call__(self, line: str) -> None:
        self.append(line)


# --- verify -----------------------------------------------------------------------------------


def test_verify_accepts_the_original_and_a_recompressed_copy(tmp_path, labels, mirror_dir):
    verify(mirror_dir / NAME, labels)
    raw = gzip.decompress((mirror_dir / NAME).read_bytes())
    copy = tmp_path / "copy" / NAME
    copy.parent.mkdir()
    copy.write_bytes(gzip.compress(raw, compresslevel=1, mtime=12345))
    assert copy.read_bytes() != (mirror_dir / NAME).read_bytes()
    verify(copy, labels)  # raw_md5 is the reference
    # With only the .gz md5 known, the re-compressed copy is rejected.
    with pytest.raises(VerificationError, match="md5 of the .gz file"):
        verify(copy, DataFile(NAME, raw_md5=None, gz_md5=labels.gz_md5, raw_size=None))
    verify(mirror_dir / NAME, DataFile(NAME, raw_md5=None, gz_md5=labels.gz_md5, raw_size=None))


def test_verify_reports_expected_and_actual(tmp_path, labels):
    other = write_gz(tmp_path, NAME, synthetic_raw("train_labels", seed=1))
    with pytest.raises(VerificationError) as error:
        verify(tmp_path / NAME, labels)
    message = str(error.value)
    assert labels.raw_md5 in message and other.raw_md5 in message
    assert str(tmp_path) not in message, "the caller names the file and its source, once"
    longer = write_gz(tmp_path, NAME, synthetic_raw("train_labels", count=21))
    with pytest.raises(VerificationError, match=f"size is {longer.raw_size} bytes, expected 28"):
        verify(tmp_path / NAME, labels)


def test_verify_names_truncated_files_and_html_pages(tmp_path, labels, mirror_dir):
    data = (mirror_dir / NAME).read_bytes()
    path = tmp_path / NAME
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(VerificationError, match="^truncated gzip"):
        verify(path, labels)
    path.write_bytes(b"<!DOCTYPE html>\n<html><body>403 Forbidden</body></html>")
    with pytest.raises(VerificationError, match="^not an IDX file: it looks like an HTML page"):
        verify(path, labels)
    # Without any checksum the file must still read to its end.
    unknown = DataFile(NAME, raw_md5=None, gz_md5=None, raw_size=None)
    verify(mirror_dir / NAME, unknown)
    path.write_bytes(data[:-5])
    with pytest.raises(VerificationError, match="truncated gzip"):
        verify(path, unknown)


def test_verify_accepts_an_uncompressed_idx_under_the_gz_name_as_preprocess_does(
    tmp_path, labels, mirror_dir
):
    path = tmp_path / NAME
    path.write_bytes(gzip.decompress((mirror_dir / NAME).read_bytes()))
    verify(path, labels)
    assert len(idx.read_labels(path)) == 20


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda raw: struct.pack(">I", 2051) + raw[4:], "an IDX images file (magic number 2051)"),
        (lambda raw: raw[:8] + bytes([11]) + raw[9:], "label 11 found, labels must be 0-9"),
        (lambda raw: raw[:4] + struct.pack(">I", 19) + raw[8:-1], "it holds 19 items, expected 20"),
        (lambda raw: b"\x00\x00\x09\x01" + raw[4:], "not an IDX labels file (magic number 2305"),
    ],
    ids=["images-magic", "label-11", "count", "wrong-type"],
)
def test_a_checksum_failure_says_what_is_wrong_with_the_content(tmp_path, labels, change, reason):
    raw = gzip.decompress((tmp_path / "mirror" / NAME).read_bytes())
    path = tmp_path / NAME
    path.write_bytes(gzip.compress(change(raw)))
    with pytest.raises(VerificationError) as error:
        verify(path, labels)
    assert str(error.value).startswith(reason), error.value
    assert "md5 of the decompressed content" in str(error.value) or "size is" in str(error.value)


def test_fetch_log_names_the_real_file_and_its_source_once(http_mirror, mirror_dir, labels, dest):
    server = http_mirror(mirror_dir)
    server.serve(NAME, b"<html><head><title>Not here</title></head></html>")
    good = http_mirror(mirror_dir)
    log = Log()
    fetch_file(labels, [server.url, good.url], dest, log=log, **FAST)
    failed = log[0]
    assert failed.startswith(f"[download] {server.url}{NAME} (attempt 1/3) failed: ")
    assert "not an IDX file: it looks like an HTML page" in failed
    assert failed.count(NAME) == 1 and ".tmp" not in failed
    assert log[1] == f"[download] {good.url}{NAME} (attempt 1/3) ok, verified"


def test_temporaries_of_a_killed_download_are_removed_by_the_next_attempt(
    synthetic, mirror_dir, tmp_path
):
    out = tmp_path / "out"
    out.mkdir()
    # What a download SIGKILLed mid-file leaves (atomic_path's naming), and an unrelated file.
    stale = out / ".train-images-idx3-ubyte.k2j4_x.tmp.gz"
    stale.write_bytes(b"half a file")
    other = out / "notes.txt"
    other.write_text("mine")
    log = Log()
    fetch_dataset(synthetic, out, extra_mirrors=[mirror_dir], log=log, **FAST)
    assert not stale.exists() and other.exists()
    assert f"[download] removed {stale}, left by an interrupted download" in log
    assert sorted(p.name for p in out.iterdir()) == sorted([*IDX_FILENAMES.values(), "notes.txt"])


# --- fetch_file over HTTP ---------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "mnist"])
@pytest.mark.parametrize("slash", [True, False])
def test_good_mirror(http_mirror, mirror_dir, labels, dest, prefix, slash):
    server = http_mirror(mirror_dir, prefix=prefix)
    base = server.url if slash else server.url.rstrip("/")
    log = Log()
    source = fetch_file(labels, [base], dest, log=log, **FAST)
    assert source == server.url + NAME
    assert dest.read_bytes() == (mirror_dir / NAME).read_bytes()
    assert server.hits(NAME) == 1
    assert len(log) == 1 and "ok" in log[0] and source in log[0]


def test_dead_mirror_then_good_one(http_mirror, dead_url, mirror_dir, labels, dest):
    server = http_mirror(mirror_dir)
    log = Log()
    source = fetch_file(labels, [dead_url, server.url], dest, log=log, **FAST)
    assert source == server.url + NAME
    # A refused connection is transient: retried, one log line per attempt.
    assert sum(dead_url in line for line in log) == 1 + FAST["retries"]
    assert "retrying in 0.01 s" in log[0] and "retrying in 0.02 s" in log[1]


@pytest.mark.parametrize("status", [403, 404])
def test_missing_file_goes_to_next_mirror_without_retry(
    http_mirror, mirror_dir, labels, dest, status
):
    first, second = http_mirror(mirror_dir), http_mirror(mirror_dir)
    first.fail(NAME, status)
    assert fetch_file(labels, [first.url, second.url], dest, **FAST) == second.url + NAME
    assert first.hits(NAME) == 1
    verify(dest, labels)


def test_corrupt_file_then_good_one(http_mirror, mirror_dir, labels, dest):
    first, second = http_mirror(mirror_dir), http_mirror(mirror_dir)
    first.serve(NAME, gzip.compress(synthetic_raw("train_labels", seed=7)))
    log = Log()
    assert fetch_file(labels, [first.url, second.url], dest, log=log, **FAST) == second.url + NAME
    assert first.hits(NAME) == 1  # a failed verification is not retried on the same mirror
    assert "md5 of the decompressed content" in log[0]
    verify(dest, labels)


def test_truncated_gzip_is_rejected(http_mirror, mirror_dir, labels, dest):
    server = http_mirror(mirror_dir)
    # Served with a matching Content-Length: the transfer looks complete, the gzip is not.
    server.serve(NAME, (mirror_dir / NAME).read_bytes()[:-10])
    with pytest.raises(DownloadError, match="truncated gzip"):
        fetch_file(labels, [server.url], dest, **FAST)
    assert list(dest.parent.iterdir()) == []


@pytest.mark.parametrize("status", [500, 503, 429])
def test_retry_with_backoff_then_success(
    http_mirror, mirror_dir, labels, dest, monkeypatch, status
):
    waits = []
    monkeypatch.setattr(download, "sleep", waits.append)
    server = http_mirror(mirror_dir)
    server.fail(NAME, status, times=2)
    log = Log()
    source = fetch_file(labels, [server.url], dest, retries=3, backoff_s=0.5, log=log)
    assert source == server.url + NAME
    assert server.hits(NAME) == 3
    assert waits == [0.5, 1.0]  # backoff_s * 2**attempt
    assert len(log) == 3 and f"HTTP {status}" in log[0] and "ok" in log[2]
    verify(dest, labels)


def test_connection_closed_mid_file_is_retried(http_mirror, mirror_dir, labels, dest):
    server = http_mirror(mirror_dir)
    server.cut(NAME, times=1)
    log = Log()
    assert fetch_file(labels, [server.url], dest, log=log, **FAST) == server.url + NAME
    assert server.hits(NAME) == 2
    assert "short read" in log[0]
    verify(dest, labels)


def test_timeout_is_retried(http_mirror, mirror_dir, labels, dest):
    server = http_mirror(mirror_dir)
    server.delay(NAME, 1.0, times=1)
    log = Log()
    fetch_file(labels, [server.url], dest, log=log, retries=1, backoff_s=0.01, timeout_s=0.2)
    assert server.hits(NAME) == 2 and "timed out" in log[0]
    verify(dest, labels)


def test_all_sources_failing(http_mirror, dead_url, mirror_dir, labels, dest, tmp_path):
    down = http_mirror(mirror_dir)
    down.fail(NAME, 500)
    missing = http_mirror(mirror_dir)
    missing.fail(NAME, 404)
    corrupt = http_mirror(mirror_dir)
    corrupt.cut(NAME)
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    mirrors = [dead_url, down.url, missing.url, corrupt.url, str(empty_dir), "ftp://example.org/"]
    with pytest.raises(DownloadError) as error:
        fetch_file(labels, mirrors, dest, **FAST)
    message = str(error.value)
    for mirror in mirrors[:-1]:
        assert mirror.rstrip("/") + "/" + NAME in message
    assert "ftp://example.org/" in message
    assert "HTTP 500" in message and "HTTP 404" in message and "short read" in message
    assert """--config 'download={"mirrors": ["/path/to/dir"]}'""" in message
    assert "download.mirrors" in message
    assert "--config dataset=mnist-sample" in message
    # No partial dest, no leftover temporary file.
    assert list(dest.parent.iterdir()) == []


def test_failure_keeps_an_existing_dest(http_mirror, mirror_dir, labels, dest):
    dest.parent.mkdir()
    dest.write_bytes(b"previous")
    server = http_mirror(mirror_dir)
    server.cut(NAME)
    with pytest.raises(DownloadError):
        fetch_file(labels, [server.url], dest, **FAST)
    assert dest.read_bytes() == b"previous"
    assert list(dest.parent.iterdir()) == [dest]


# --- local mirrors ----------------------------------------------------------------------------


def test_local_directory_mirror(mirror_dir, labels, dest, tmp_path):
    assert fetch_file(labels, [str(mirror_dir)], dest, **FAST) == str(mirror_dir / NAME)
    assert dest.read_bytes() == (mirror_dir / NAME).read_bytes()
    other = tmp_path / "other" / NAME
    assert fetch_file(labels, [mirror_dir.as_uri()], other, **FAST) == str(mirror_dir / NAME)
    verify(other, labels)


def test_missing_local_file_then_http(http_mirror, mirror_dir, labels, dest, tmp_path):
    server = http_mirror(mirror_dir)
    log = Log()
    source = fetch_file(labels, [str(tmp_path / "nowhere"), server.url], dest, log=log, **FAST)
    assert source == server.url + NAME
    assert "No such file" in log[0]


# --- fetch_dataset ----------------------------------------------------------------------------


def test_fetch_dataset_extra_mirrors_first_and_existing_files_kept(
    http_mirror, mirror_dir, synthetic, tmp_path
):
    fallback = http_mirror(mirror_dir)
    preferred = http_mirror(mirror_dir)
    dataset = Dataset(synthetic.name, synthetic.files, (fallback.url,), (), "")
    out = tmp_path / "out"
    sources = fetch_dataset(dataset, out, extra_mirrors=[preferred.url], **FAST, log=Log())
    assert sources == {role: preferred.url + IDX_FILENAMES[role] for role in IDX_ROLES}
    assert fallback.requests == []

    # A second run keeps what verifies and fetches again what does not.
    (out / NAME).write_bytes(b"garbage")
    log = Log()
    sources = fetch_dataset(dataset, out, log=log, **FAST)
    assert sources["train_labels"] == fallback.url + NAME
    assert [sources[role] for role in IDX_ROLES if role != "train_labels"] == ["existing file"] * 3
    assert fallback.requests == [NAME] and len(preferred.requests) == 4
    assert any(line.endswith("; fetching a fresh copy") for line in log)
    for data_file in synthetic.files.values():
        verify(out / data_file.filename, data_file)


def test_fetch_dataset_without_default_mirrors(http_mirror, mirror_dir, synthetic, tmp_path):
    server = http_mirror(mirror_dir)
    dataset = Dataset(synthetic.name, synthetic.files, (server.url,), (), "")
    with pytest.raises(DownloadError, match="no mirrors given"):
        fetch_dataset(dataset, tmp_path / "out", use_default_mirrors=False, **FAST)
    # A lone mirror given as a string is one mirror, not a list of characters.
    sources = fetch_dataset(
        dataset, tmp_path / "out", extra_mirrors=str(mirror_dir), use_default_mirrors=False
    )
    assert set(sources.values()) == {str(mirror_dir / name) for name in IDX_FILENAMES.values()}
    assert server.requests == []


# --- the registry -----------------------------------------------------------------------------


def test_unknown_dataset_name():
    with pytest.raises(ValueError, match="unknown data set 'mnsit'") as error:
        get_dataset("mnsit")
    for name in ("mnist", "mnist-sample", "fashion_mnist"):
        assert name in str(error.value)


@pytest.mark.parametrize("name", ["mnist", "mnist-sample", "fashion_mnist"])
def test_registry_entries(name):
    dataset = get_dataset(name)
    assert dataset.name == name and tuple(dataset.files) == IDX_ROLES
    assert [f.filename for f in dataset.files.values()] == list(IDX_FILENAMES.values())
    assert len(dataset.class_names) == 10 and "License" in dataset.attribution
    assert dataset.mirrors


def test_mnist_sample_reads_its_checksums_file(tmp_path):
    sample = datasets.mnist_sample(tmp_path)  # no checksums.json: no checksums, no error
    assert sample.mirrors == (str(tmp_path),)
    assert all(f.raw_md5 is None and f.raw_size is None for f in sample.files.values())
    files = {
        IDX_FILENAMES[role]: write_gz(tmp_path, IDX_FILENAMES[role], synthetic_raw(role))
        for role in IDX_ROLES
    }
    checksums = {name: {"raw_md5": f.raw_md5, "raw_size": f.raw_size} for name, f in files.items()}
    (tmp_path / "checksums.json").write_text(json.dumps(checksums))
    sample = datasets.mnist_sample(tmp_path)
    assert sample.files["test_images"].raw_md5 == files["t10k-images-idx3-ubyte.gz"].raw_md5
    sources = fetch_dataset(sample, tmp_path / "out", log=Log())
    assert sources["train_images"] == str(tmp_path / "train-images-idx3-ubyte.gz")
    (tmp_path / "checksums.json").write_text("{not json")
    with pytest.raises(ValueError, match="checksums.json: not valid JSON"):
        datasets.mnist_sample(tmp_path)


def test_bundled_sample_verifies():
    sample = get_dataset("mnist-sample")
    directory = Path(sample.mirrors[0])
    if not (directory / "checksums.json").is_file():
        pytest.skip(f"no bundled sample with checksums.json in {directory}")
    for data_file in sample.files.values():
        assert data_file.raw_md5 and data_file.raw_size
        verify(directory / data_file.filename, data_file)


def test_real_mnist_matches_the_registry(http_mirror, tmp_path):
    if not all((SHARED_MNIST / name).is_file() for name in IDX_FILENAMES.values()):
        pytest.skip(f"the real MNIST files are not in {SHARED_MNIST}")
    mnist = get_dataset("mnist")
    for data_file in mnist.files.values():
        verify(SHARED_MNIST / data_file.filename, data_file)
    # The same files as an offline cluster would use them: a local copy served over HTTP.
    server = http_mirror(SHARED_MNIST)
    server.cut("t10k-labels-idx1-ubyte.gz", times=1)
    sources = fetch_dataset(
        mnist, tmp_path / "mnist", extra_mirrors=[server.url], use_default_mirrors=False, **FAST
    )
    assert sources["test_labels"] == server.url + "t10k-labels-idx1-ubyte.gz"
    assert server.hits("t10k-labels-idx1-ubyte.gz") == 2
