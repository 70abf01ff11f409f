"""Classify a user's own images with a trained run: a folder of image files, or an IDX or NPZ
file of images, in; a CSV (file, predicted class, the probability of each class) out.

Images go in as the training saw them: 28 x 28 grayscale, a white (bright) digit on a black
background, pixel / 255. Others are converted (docs/predict.md):

- colour (RGB, palette, CMYK) to grayscale by luminance (Pillow's ITU-R 601-2 weights,
  L = 0.299 R + 0.587 G + 0.114 B); transparency composited onto white first;
- a light background (the border's median above mid-grey: black ink on paper) is inverted;
- any other size than 28 x 28 is brought to MNIST's own convention: the ink's bounding box
  (pixels of at least ``INK``) scaled, keeping its aspect ratio, to fit 20 x 20 (Lanczos), then
  placed in a 28 x 28 field with its centre of mass at the centre.

A 28 x 28 image is used as it is (only inverted if its background is light). A file that is
not an image, or an image without ink, is reported by name and skipped; the others are still
classified.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnistflow import idx
from mnistflow.atomic import write_text

SIDE = 28  # MNIST's images
BOX = 20  # MNIST's digits were scaled to fit this box, then centred by centre of mass
INK = 64  # a pixel (0..255, after inversion) counts as ink from this value on
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
INVERT = ("auto", "always", "never")


class PredictInputError(ValueError):
    """The input as a whole cannot be read (a missing path, an empty folder, a bad NPZ)."""


@dataclass
class Image:
    name: str  # the file, or file[index] for an image of an IDX/NPZ file
    pixels: np.ndarray | None  # uint8 (28, 28), white on black; None: could not be used
    note: str = ""  # what was done to it, or why it was skipped


def to_mnist(gray: np.ndarray, invert: str = "auto") -> tuple[np.ndarray, list[str]]:
    """A 2-D uint8 grayscale image as MNIST's (28, 28), white on black; and what was done.

    Raises ValueError for an image without ink."""
    done = []
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if invert == "always" or (invert == "auto" and np.median(border) > 127):
        gray = 255 - gray
        done.append("inverted (light background)" if invert == "auto" else "inverted")
    if gray.shape == (SIDE, SIDE):
        return gray, done
    from PIL import Image as PILImage

    rows, cols = np.nonzero(gray >= INK)
    if not len(rows):
        raise ValueError(f"no ink: no pixel reaches {INK}/255 (after inversion)")
    ink = gray[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    scale = BOX / max(ink.shape)
    size = (max(1, round(ink.shape[1] * scale)), max(1, round(ink.shape[0] * scale)))
    box = np.asarray(PILImage.fromarray(ink).resize(size, PILImage.Resampling.LANCZOS))
    # Centre of mass to the field's centre; the box stays inside the field.
    mass = box.astype(np.float64)
    total = mass.sum() or 1.0
    cy = (mass.sum(axis=1) * np.arange(box.shape[0])).sum() / total
    cx = (mass.sum(axis=0) * np.arange(box.shape[1])).sum() / total
    top = int(np.clip(round(SIDE / 2 - 0.5 - cy), 0, SIDE - box.shape[0]))
    left = int(np.clip(round(SIDE / 2 - 0.5 - cx), 0, SIDE - box.shape[1]))
    field = np.zeros((SIDE, SIDE), np.uint8)
    field[top : top + box.shape[0], left : left + box.shape[1]] = box
    done.append(f"{gray.shape[1]}x{gray.shape[0]} fitted to {BOX}x{BOX}, centred by mass")
    return field, done


def read_image_file(path: Path) -> tuple[np.ndarray, list[str]]:
    """A PNG/JPEG/... file as 2-D uint8 grayscale; raises ValueError if it is no image."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    try:
        with PILImage.open(path) as image:
            image.load()
            done = []
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                rgba = image.convert("RGBA")
                white = PILImage.new("RGBA", rgba.size, (255, 255, 255, 255))
                image = PILImage.alpha_composite(white, rgba)
                done.append("transparency onto white")
            if image.mode not in ("L", "1"):
                done.append(f"{image.mode} to grayscale (luminance)")
            gray = image.convert("L")
            return np.asarray(gray, dtype=np.uint8).copy(), done
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        reason = f"{type(error).__name__}: {error}"
        raise ValueError(f"not an image file Pillow can read ({reason})") from None


def read_array_file(path: Path) -> np.ndarray:
    """Images (N, H, W) from an IDX file (.gz too) or an NPZ/NPY file, as uint8 0..255.

    NPZ: the array ``images``, or its only array; uint8 0..255 or float in [0, 1]."""
    if path.suffix in (".npz", ".npy"):
        try:
            loaded = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            raise PredictInputError(f"{path}: cannot be read as NumPy data ({error})") from None
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                names = list(loaded.files)
                if "images" not in names and len(names) != 1:
                    raise PredictInputError(
                        f"{path} holds arrays {names}: name the images' array `images`"
                    )
                images = loaded["images" if "images" in names else names[0]]
        else:
            images = loaded
        if images.ndim == 2 and images.shape[1] != SIDE * SIDE:
            images = images[None]  # one image
        if images.ndim == 2 and images.shape[1] == SIDE * SIDE:
            images = images.reshape(-1, SIDE, SIDE)  # flattened, as the softmax model takes them
        if images.ndim != 3:
            raise PredictInputError(
                f"{path}: images of shape {images.shape}; expected (N, height, width) or "
                "(height, width) grayscale"
            )
        if images.dtype == np.uint8:
            return images
        if np.issubdtype(images.dtype, np.floating) and images.min() >= 0 and images.max() <= 1:
            return np.round(images * 255).astype(np.uint8)
        raise PredictInputError(
            f"{path}: pixels of type {images.dtype} in [{images.min()}, {images.max()}]; "
            "expected uint8 0..255 or float in [0, 1]"
        )
    try:
        return idx.read_idx(path, idx.IMAGES_MAGIC)
    except idx.IdxError as error:
        raise PredictInputError(
            f"{error}. Give a folder of image files, an IDX images file (.idx, .gz) or an NPZ file"
        ) from None


def collect(source: str | Path, invert: str) -> list[Image]:
    """The images of ``source`` in MNIST's form, in order; those that cannot be used have no
    pixels and a note saying why."""
    source = Path(source)
    if not source.exists():
        raise PredictInputError(f"{source} does not exist: give a folder of images or a file")
    images = []
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise PredictInputError(f"{source} holds no files")
        for path in files:
            try:
                gray, read = read_image_file(path)
                pixels, done = to_mnist(gray, invert)
            except ValueError as error:
                images.append(Image(path.name, None, f"skipped: {error}"))
                continue
            images.append(Image(path.name, pixels, "; ".join(read + done)))
    else:
        for i, gray in enumerate(read_array_file(source)):
            name = f"{source.name}[{i}]"
            try:
                pixels, done = to_mnist(gray, invert)
            except ValueError as error:
                images.append(Image(name, None, f"skipped: {error}"))
                continue
            images.append(Image(name, pixels, "; ".join(done)))
    return images


def probabilities(model_keras: str | Path, pixels: np.ndarray) -> np.ndarray:
    """Class probabilities (N, classes) of uint8 images (N, 28, 28), normalised as the
    preprocess step does (pixel / 255)."""
    import keras

    from mnistflow import models, preprocess

    model = keras.saving.load_model(model_keras, compile=False)
    x = models.reshape_for(model, preprocess.normalise(pixels))
    return keras.ops.convert_to_numpy(model.predict(x, batch_size=1000, verbose=0))


def predictions_csv(images: list[Image], probs: np.ndarray, class_names) -> str:
    """One row per input, in order: those skipped have no prediction, and say why."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["file", "predicted", *(f"p_{name}" for name in class_names), "note"])
    rows = iter(probs)
    for image in images:
        if image.pixels is None:
            writer.writerow([image.name, "", *([""] * len(class_names)), image.note])
            continue
        row = next(rows)
        predicted = class_names[int(row.argmax())]
        writer.writerow([image.name, predicted, *(f"{p:.6g}" for p in row), image.note])
    return out.getvalue()


def predict(
    source: str | Path,
    model_keras: str | Path,
    dest: str | Path,
    *,
    class_names,
    invert: str = "auto",
    log: Callable[[str], None] = print,
) -> list[Image]:
    """Classify the images of ``source`` with ``model_keras``; write the CSV ``dest``.
    A file that cannot be used is logged by name (and kept in the CSV, with the reason)."""
    if invert not in INVERT:
        raise PredictInputError(f"invert: {invert!r}; one of {', '.join(INVERT)}")
    images = collect(source, invert)
    for image in images:
        if image.pixels is None:
            log(f"WARNING: {image.name}: {image.note.removeprefix('skipped: ')}; skipped")
        elif image.note:
            log(f"{image.name}: {image.note}")
    usable = [image.pixels for image in images if image.pixels is not None]
    if not usable:
        raise PredictInputError(f"{source}: no image could be used (see the warnings above)")
    probs = probabilities(model_keras, np.stack(usable))
    write_text(dest, predictions_csv(images, probs, class_names))
    skipped = len(images) - len(usable)
    log(f"Classified {len(usable)} image(s) of {source} into {dest}; {skipped} skipped")
    return images


def target_name(images: str | Path) -> str:
    """The CSV's name for an input: my_digits/ -> my_digits, t10k-images-idx3-ubyte.gz ->
    t10k-images-idx3-ubyte."""
    name = Path(images).name
    for suffix in (".gz", ".npz", ".npy", ".idx"):
        name = name.removesuffix(suffix)
    return name


def target(config: dict) -> str:
    """The CSV the `predict` target makes: config predict.images by the run predict names."""
    wanted = config["predict"]
    if not wanted["images"]:
        raise PredictInputError(
            "the predict target needs the images to classify: set predict.images to a folder "
            "of PNG/JPEG files or an IDX/NPZ file, e.g. --config predict='{images: my_digits}'"
        )
    return (
        f"results/{config['dataset']}/{wanted['family']}/{wanted['run']}/predicted/"
        f"{target_name(wanted['images'])}.csv"
    )


def source(config: dict, name: str) -> str:
    """The input of predicted/<name>.csv: config predict.images, which must be so named."""
    images = config["predict"]["images"]
    if not images or target_name(images) != name:
        raise PredictInputError(
            f"predicted/{name}.csv is made from predict.images named {name}: "
            f"set --config predict='{{images: <path>}}'"
        )
    return images
