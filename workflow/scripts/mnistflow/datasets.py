"""Registry of the data sets the workflow can download: file names, checksums, mirrors, credits.

All data sets share MNIST's layout: four gzipped IDX files with the same names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

IDX_ROLES = ("train_images", "train_labels", "test_images", "test_labels")

IDX_FILENAMES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}

# The small subset bundled with the repository (<repo>/data/mnist-sample), for offline runs.
SAMPLE_DIR = Path(__file__).resolve().parents[3] / "data" / "mnist-sample"
SAMPLE_CHECKSUMS = "checksums.json"


@dataclass(frozen=True)
class DataFile:
    filename: str  # e.g. "train-images-idx3-ubyte.gz"
    raw_md5: str | None  # md5 of the DECOMPRESSED content, so re-compressed copies pass too
    gz_md5: str | None  # md5 of the .gz the public mirrors serve
    raw_size: int | None  # decompressed bytes


@dataclass(frozen=True)
class Dataset:
    name: str
    files: dict[str, DataFile]  # keyed by IDX_ROLES
    mirrors: tuple[str, ...]  # in order; URLs (file name appended) or local directories
    class_names: tuple[str, ...]
    attribution: str  # citation + license text
    validation_size: int = 5000  # default hold-out from the training set


DIGIT_NAMES = tuple(str(digit) for digit in range(10))

MNIST_ATTRIBUTION = (
    "MNIST database of handwritten digits: Y. LeCun, C. Cortes, C. J. C. Burges, "
    "http://yann.lecun.com/exdb/mnist/. "
    "License: Creative Commons Attribution-Share Alike 3.0 (CC BY-SA 3.0)."
)

MNIST = Dataset(
    name="mnist",
    files={
        "train_images": DataFile(
            "train-images-idx3-ubyte.gz",
            raw_md5="6bbc9ace898e44ae57da46a324031adb",
            gz_md5="f68b3c2dcbeaaa9fbdd348bbdeb94873",
            raw_size=47040016,
        ),
        "train_labels": DataFile(
            "train-labels-idx1-ubyte.gz",
            raw_md5="a25bea736e30d166cdddb491f175f624",
            gz_md5="d53e105ee54ea40749a09fcbcd1e9432",
            raw_size=60008,
        ),
        "test_images": DataFile(
            "t10k-images-idx3-ubyte.gz",
            raw_md5="2646ac647ad5339dbf082846283269ea",
            gz_md5="9fb629c4189551a2d022fa330f9573f3",
            raw_size=7840016,
        ),
        "test_labels": DataFile(
            "t10k-labels-idx1-ubyte.gz",
            raw_md5="27ae3e4e09519cfbb04c329615203637",
            gz_md5="ec29112dd5afa0611ce80d1b7f02629c",
            raw_size=10008,
        ),
    },
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",  # torchvision's mirror
        "https://storage.googleapis.com/cvdf-datasets/mnist/",  # TensorFlow Datasets' mirror
        "http://yann.lecun.com/exdb/mnist/",  # the original; often answers 403/404 nowadays
    ),
    class_names=DIGIT_NAMES,
    attribution=MNIST_ATTRIBUTION,
)

# Only the md5 sums of the published .gz files are known (torchvision's FashionMNIST.resources).
FASHION_MNIST = Dataset(
    name="fashion_mnist",
    files={
        "train_images": DataFile(
            "train-images-idx3-ubyte.gz",
            raw_md5=None,
            gz_md5="8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            raw_size=None,
        ),
        "train_labels": DataFile(
            "train-labels-idx1-ubyte.gz",
            raw_md5=None,
            gz_md5="25c81989df183df01b3e8a0aad5dffbe",
            raw_size=None,
        ),
        "test_images": DataFile(
            "t10k-images-idx3-ubyte.gz",
            raw_md5=None,
            gz_md5="bef4ecab320f06d8554ea6380940ec79",
            raw_size=None,
        ),
        "test_labels": DataFile(
            "t10k-labels-idx1-ubyte.gz",
            raw_md5=None,
            gz_md5="bb300cfdad3c16e7a12a480ee83cd310",
            raw_size=None,
        ),
    },
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
    ),
    class_names=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    attribution=(
        "Fashion-MNIST: H. Xiao, K. Rasul, R. Vollgraf, Fashion-MNIST: a Novel Image Dataset for "
        "Benchmarking Machine Learning Algorithms, arXiv:1708.07747 (2017), "
        "https://github.com/zalandoresearch/fashion-mnist. "
        "License: MIT, Copyright (c) 2017 Zalando SE."
    ),
)


def _read_sample_checksums(directory: Path) -> dict[str, dict]:
    """The sample's checksums.json; empty when missing, so that a fresh checkout still imports."""
    path = directory / SAMPLE_CHECKSUMS
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    try:
        checksums = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(checksums, dict):
        raise ValueError(f"{path}: expected an object keyed by file name")
    return checksums


def mnist_sample(directory: Path | None = None) -> Dataset:
    """The bundled sample (or a sample in ``directory``), with the checksums listed beside it.

    Without a checksums.json the files are only checked to be complete gzip streams.
    """
    directory = Path(directory or SAMPLE_DIR)
    checksums = _read_sample_checksums(directory)
    files = {}
    for role, filename in IDX_FILENAMES.items():
        entry = checksums.get(filename, {})
        files[role] = DataFile(
            filename,
            raw_md5=entry.get("raw_md5"),
            gz_md5=entry.get("gz_md5"),
            raw_size=entry.get("raw_size"),
        )
    return Dataset(
        name="mnist-sample",
        files=files,
        mirrors=(str(directory),),
        class_names=DIGIT_NAMES,
        validation_size=500,
        attribution=(
            "A small subset (2,000 training and 500 test images) of the " + MNIST_ATTRIBUTION
        ),
    )


DATASETS: dict[str, Dataset] = {
    "mnist": MNIST,
    "mnist-sample": mnist_sample(),
    "fashion_mnist": FASHION_MNIST,
}


def checksums(name: str) -> dict[str, dict]:
    """What defines a data set's content, per file: the download's only rerun trigger."""
    return {
        data_file.filename: {
            "raw_md5": data_file.raw_md5,
            "gz_md5": data_file.gz_md5,
            "raw_size": data_file.raw_size,
        }
        for data_file in get_dataset(name).files.values()
    }


def get_dataset(name: str) -> Dataset:
    if name not in DATASETS:
        allowed = ", ".join(DATASETS)
        raise ValueError(f"unknown data set {name!r}; allowed names: {allowed}")
    return DATASETS[name]
