"""Fetch the data set's files from a list of mirrors, verify them, and write them atomically.

Mirrors are tried in order. Each is either an http(s) base URL (the file name is appended) or a
local directory (a plain path or a file:// URL), e.g. a copy on a cluster's shared storage.
A file reaches its destination only once verified, so a killed or failed download never leaves
a partial file that Snakemake would later trust.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import shutil
import sys
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from time import sleep

from mnistflow import idx
from mnistflow.atomic import atomic_path
from mnistflow.datasets import DataFile, Dataset

CHUNK_SIZE = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
USER_AGENT = "mnistflow-download/1.0 (python urllib)"

WAYS_OUT = """\
Ways out:
  (1) point the workflow at a local mirror, a directory holding the data set's .gz files:
      snakemake --config 'download={"mirrors": ["/path/to/dir"]}'   (config key download.mirrors)
  (2) use the small offline sample bundled with the repository:
      snakemake --config dataset=mnist-sample"""


class DownloadError(RuntimeError):
    """No source delivered a file that verifies; the message lists each source and the ways out."""


class VerificationError(ValueError):
    """A file is not the expected one; the message names the file, expected vs. actual."""


class _TransientError(Exception):
    """A failure worth retrying on the same source (the server or network may recover)."""


def _log_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _md5_of_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


def _open_content(path: Path):
    """The file's IDX content: gunzipped, or as is when it is not gzip (as idx.read_idx does)."""
    with path.open("rb") as stream:
        gzipped = stream.read(2) == GZIP_MAGIC
    return gzip.open(path, "rb") if gzipped else path.open("rb")


def _raw_md5_and_size(path: Path) -> tuple[str, int]:
    """md5 and size of the decompressed content, read in chunks (the images are 47 MB raw)."""
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    try:
        with _open_content(path) as stream:
            while chunk := stream.read(CHUNK_SIZE):
                digest.update(chunk)
                size += len(chunk)
    except EOFError as error:
        raise VerificationError(f"truncated gzip ({error})") from error
    except (gzip.BadGzipFile, zlib.error) as error:
        raise VerificationError(f"corrupt gzip ({error})") from error
    return digest.hexdigest(), size


def _why_not(path: Path, data_file: DataFile) -> str:
    """What is wrong with a file that fails its checksum, as precisely as its content says."""
    try:
        with _open_content(path) as stream:
            head = stream.read(512)
    except (EOFError, OSError, zlib.error):
        return ""  # the checksum's own message says it all
    if idx.looks_like_html(head):
        return "not an IDX file: it looks like an HTML page (an error or login page?)"
    read = idx.read_labels if "labels" in data_file.filename else idx.read_images
    try:
        array = read(path)
    except idx.IdxError as error:
        return str(error).removeprefix(f"{path}: ")
    expected = _expected_count(data_file)
    if expected is not None and len(array) != expected:
        return f"it holds {len(array)} items, expected {expected}"
    return "its content differs from the published file (a different version or a damaged copy)"


def _expected_count(data_file: DataFile) -> int | None:
    """Items in the file, from its known decompressed size (header: 8 bytes labels, 16 images)."""
    if data_file.raw_size is None:
        return None
    if "labels" in data_file.filename:
        return data_file.raw_size - 8
    return (data_file.raw_size - 16) // (28 * 28)


def verify(path: Path, data_file: DataFile) -> None:
    """Raise VerificationError unless ``path`` holds ``data_file``.

    The decompressed content is the reference when its md5 is known, so the mirrors' original
    .gz, a faithful re-compressed copy and an uncompressed copy under the .gz name all pass
    (preprocess reads all three). Otherwise the .gz md5 is checked. With no checksum at all,
    the file must at least be readable to its end. The message says what is wrong; the
    caller adds which file and where it came from.
    """
    path = Path(path)
    if data_file.raw_md5 is None and data_file.gz_md5 is not None:
        actual = _md5_of_file(path)
        if actual != data_file.gz_md5:
            problem = f"md5 of the .gz file is {actual}, expected {data_file.gz_md5}"
            raise VerificationError(_with_reason(problem, path, data_file))
        return
    raw_md5, raw_size = _raw_md5_and_size(path)
    if data_file.raw_size is not None and raw_size != data_file.raw_size:
        problem = f"decompressed size is {raw_size} bytes, expected {data_file.raw_size}"
        raise VerificationError(_with_reason(problem, path, data_file))
    if data_file.raw_md5 is not None and raw_md5 != data_file.raw_md5:
        problem = f"md5 of the decompressed content is {raw_md5}, expected {data_file.raw_md5}"
        raise VerificationError(_with_reason(problem, path, data_file))


def _with_reason(problem: str, path: Path, data_file: DataFile) -> str:
    reason = _why_not(path, data_file)
    return f"{reason} ({problem})" if reason else problem


def remove_stale_temporaries(dest: Path) -> list[Path]:
    """Delete what killed attempts left beside ``dest`` (atomic_path's ``.<stem>.*.tmp<suffix>``).

    Snakemake runs one download job per data set at a time, so no live attempt owns them.
    """
    stale = sorted(dest.parent.glob(f".{dest.stem}.*.tmp{dest.suffix}"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def _local_directory(mirror: str) -> Path | None:
    """The directory a mirror names, or None when it is a URL."""
    parsed = urllib.parse.urlparse(mirror)
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    if parsed.scheme in ("http", "https"):
        return None
    if parsed.scheme and len(parsed.scheme) > 1:  # one letter: a Windows drive
        raise ValueError(f"unsupported mirror {mirror!r}: use http(s)://, file:// or a directory")
    return Path(mirror).expanduser()


def _file_url(base_url: str, filename: str) -> str:
    return base_url.rstrip("/") + "/" + urllib.parse.quote(filename)


def _copy_local(source: Path, tmp: Path) -> None:
    with source.open("rb") as stream, tmp.open("wb") as out:
        shutil.copyfileobj(stream, out, CHUNK_SIZE)


def _download(url: str, tmp: Path, timeout_s: float) -> None:
    """Download ``url`` into ``tmp``; raise _TransientError for failures worth retrying."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response, tmp.open("wb") as out:
            expected = response.headers.get("Content-Length")
            received = 0
            while chunk := response.read(CHUNK_SIZE):
                out.write(chunk)
                received += len(chunk)
    except urllib.error.HTTPError as error:
        error.close()
        reason = f"HTTP {error.code} {error.reason}"
        if error.code >= 500 or error.code == 429:
            raise _TransientError(reason) from error
        raise  # 403, 404, ...: this mirror does not have the file, retrying will not help
    except urllib.error.URLError as error:
        # Refused connections and timeouts may heal; unknown hosts, TLS failures will not.
        if isinstance(error.reason, (ConnectionError, TimeoutError)):
            raise _TransientError(f"{error.reason}") from error
        raise
    except (ConnectionError, TimeoutError, http.client.IncompleteRead) as error:
        raise _TransientError(f"{type(error).__name__}: {error}") from error
    # urllib does not notice a connection closed before Content-Length bytes arrived.
    if expected is not None and received != int(expected):
        raise _TransientError(f"short read: {received} of {expected} bytes")


def _describe(error: BaseException) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return f"{error.reason}"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror  # the file's name is already in the line
    return str(error) or type(error).__name__


def _fetch_once(
    source: str, local: bool, data_file: DataFile, dest: Path, timeout_s: float
) -> None:
    """Copy or download ``source`` beside ``dest``, verify it, then move it onto ``dest``."""
    with atomic_path(dest) as tmp:
        if local:
            _copy_local(Path(source), tmp)
        else:
            _download(source, tmp, timeout_s)
        verify(tmp, data_file)


def fetch_file(
    data_file: DataFile,
    mirrors: Iterable[str],
    dest: Path,
    *,
    retries: int = 3,
    backoff_s: float = 1.0,
    timeout_s: float = 60.0,
    log: Callable[[str], None] = _log_stderr,
) -> str:
    """Fetch ``data_file`` from the first mirror that delivers a verified copy; return its source.

    A transient failure (refused or reset connection, timeout, HTTP 5xx or 429, short read) is
    retried up to ``retries`` times, waiting ``backoff_s * 2**attempt`` seconds; a missing file
    (403, 404, ...) or a failed verification moves on to the next mirror at once.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    name = data_file.filename
    failures: list[str] = []
    for mirror in map(str, mirrors):
        try:
            directory = _local_directory(mirror)
        except ValueError as error:
            failures.append(f"{mirror}: {error}")
            log(f"[download] {mirror}: {error}")
            continue
        local = directory is not None
        source = str(directory / name) if local else _file_url(mirror, name)
        attempts = 1 if local else 1 + retries
        for attempt in range(attempts):
            tried = f"[download] {source} (attempt {attempt + 1}/{attempts})"
            try:
                _fetch_once(source, local, data_file, dest, timeout_s)
            except _TransientError as error:
                if attempt + 1 < attempts:
                    delay = backoff_s * 2**attempt
                    log(f"{tried} failed: {error}; retrying in {delay:g} s")
                    sleep(delay)
                    continue
                failures.append(f"{source}: {error} (after {attempts} attempts)")
                log(f"{tried} failed: {error}")
            except (OSError, http.client.HTTPException, VerificationError) as error:
                # HTTPError and URLError are OSErrors too: missing file, unknown host, TLS, ...
                failures.append(f"{source}: {_describe(error)}")
                log(f"{tried} failed: {_describe(error)}")
            else:
                log(f"{tried} ok, verified")
                return source
            break  # not worth retrying here: next mirror
    tried_all = "\n".join(f"  - {failure}" for failure in failures) or "  (no mirrors given)"
    raise DownloadError(f"could not get {name} from any source:\n{tried_all}\n{WAYS_OUT}")


def fetch_dataset(
    dataset: Dataset,
    dest_dir: Path,
    *,
    extra_mirrors: Iterable[str] = (),
    use_default_mirrors: bool = True,
    **kwargs,
) -> dict[str, str]:
    """Fetch the data set's files into ``dest_dir``; return {role: source used}.

    The user's ``extra_mirrors`` come first, then the data set's defaults. Files already in
    ``dest_dir`` that verify are kept (source "existing file").
    """
    if isinstance(extra_mirrors, (str, os.PathLike)):  # a lone mirror, not a list of them
        extra_mirrors = [extra_mirrors]
    mirrors = [str(mirror) for mirror in extra_mirrors]
    if use_default_mirrors:
        mirrors += dataset.mirrors
    mirrors = list(dict.fromkeys(mirrors))  # drop duplicates, keep the order
    log = kwargs.get("log", _log_stderr)
    dest_dir = Path(dest_dir)
    sources = {}
    for role, data_file in dataset.files.items():
        dest = dest_dir / data_file.filename
        for stale in remove_stale_temporaries(dest):
            log(f"[download] removed {stale}, left by an interrupted download")
        if dest.exists():
            try:
                verify(dest, data_file)
            except VerificationError as error:
                log(f"[download] {dest}: {error}; fetching a fresh copy")
            else:
                log(f"[download] {dest}: verifies, kept")
                sources[role] = "existing file"
                continue
        sources[role] = fetch_file(data_file, mirrors, dest, **kwargs)
    return sources
