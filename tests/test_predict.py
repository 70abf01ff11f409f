"""`snakemake predict` classifies a user's own images as the evaluate step does."""

import csv
import gzip

import numpy as np
import pytest
import yaml

from conftest import copy_workflow, snakemake

pytest.importorskip("keras")

RUN = "results/mnist-sample/softmax/default"
COUNT = 30  # test images written as PNG files


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A softmax run trained on the bundled sample by the real workflow, and its test images
    as uint8 (as image files hold them) with the train step's predictions for them."""
    from mnistflow import preprocess

    workdir = copy_workflow(tmp_path_factory.mktemp("predict") / "workflow")
    config = {
        "dataset": "mnist-sample",
        "models": ["softmax"],
        "hyperparameters": {"softmax": {"epochs": 10}},
        "resources": {"train": {"threads": 1}, "evaluate": {"threads": 1}},
    }
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    snakemake(workdir, f"{RUN}/predictions.npz")
    images, _ = preprocess.load_split(workdir / "results/mnist-sample/data.h5", "test")
    pixels = np.round(images * 255).astype(np.uint8)
    assert np.array_equal(preprocess.normalise(pixels), images)  # the files hold the same data
    with np.load(workdir / RUN / "predictions.npz") as saved:
        probabilities = saved["probabilities"]
    return workdir, pixels, probabilities


def read_csv(path):
    with open(path, newline="") as handle:
        return {row["file"]: row for row in csv.DictReader(handle)}


def probabilities_of(row):
    return np.array([float(row[f"p_{digit}"]) for digit in range(10)])


@pytest.mark.slow  # trains a run (about a minute)
def test_png_folder_gets_the_evaluate_steps_classes(trained, tmp_path):
    from PIL import Image

    workdir, pixels, expected = trained
    folder = tmp_path / "my_digits"
    folder.mkdir()
    for i in range(COUNT):
        Image.fromarray(pixels[i]).save(folder / f"test-{i:03d}.png")
    # An RGB photo-like scan: dark ink on white paper, in colour (R=G=B: luminance is exact).
    inverted = np.repeat((255 - pixels[0])[..., None], 3, axis=2)
    Image.fromarray(inverted, "RGB").save(folder / "rgb-ink-on-paper.png")
    # 32x32: the 28x28 image with a 2-pixel black border, as another tool might crop it.
    top2 = np.sort(expected, axis=1)[:, -2:]
    confident = int(np.argmax(top2[:, 1] - top2[:, 0]))  # the clearest case: its class holds
    Image.fromarray(np.pad(pixels[confident], 2)).save(folder / "big-32x32.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a PNG")
    (folder / "notes.txt").write_text("not an image\n")

    result = snakemake(
        workdir, "predict", "--config", f"predict={{images: {folder}, family: softmax}}"
    )
    out = workdir / RUN / "predicted" / "my_digits.csv"
    assert out.is_file(), result.stdout[-2000:]
    rows = read_csv(out)
    assert len(rows) == COUNT + 4  # every file has a row, in name order
    for i in range(COUNT):
        row = rows[f"test-{i:03d}.png"]
        np.testing.assert_allclose(probabilities_of(row), expected[i], atol=2e-6, err_msg=str(i))
        assert row["predicted"] == str(expected[i].argmax())
        assert row["note"] == ""  # used as it is

    rgb = rows["rgb-ink-on-paper.png"]
    assert "RGB to grayscale (luminance)" in rgb["note"] and "inverted" in rgb["note"]
    np.testing.assert_allclose(probabilities_of(rgb), expected[0], atol=2e-6)

    big = rows["big-32x32.png"]
    assert "32x32 fitted to 20x20, centred by mass" in big["note"]
    assert big["predicted"] == str(expected[confident].argmax())

    for name in ("broken.png", "notes.txt"):
        assert rows[name]["predicted"] == "" and rows[name]["p_0"] == ""
        assert rows[name]["note"].startswith("skipped: not an image file Pillow can read")
    log = (workdir / "logs/mnist-sample/softmax/default/predict-my_digits.log").read_text()
    assert "WARNING: broken.png: not an image file" in log, log
    assert "WARNING: notes.txt: not an image file" in log
    assert f"Classified {COUNT + 2} image(s)" in log and "2 skipped" in log


@pytest.mark.slow
def test_idx_and_npz_files_get_the_same_classes(trained, tmp_path):
    from mnistflow import idx, predict

    workdir, pixels, expected = trained
    idx_file = tmp_path / "digits-idx3-ubyte.gz"
    idx_file.write_bytes(gzip.compress(idx.encode_idx(pixels[:COUNT])))
    npz_file = tmp_path / "digits.npz"  # float in [0, 1], as data.h5 holds them
    np.savez(npz_file, images=pixels[:COUNT].astype(np.float32) / 255)
    for source in (idx_file, npz_file):
        out = tmp_path / f"{source.name}.csv"
        predict.predict(source, workdir / RUN / "model.keras", out, class_names=list("0123456789"))
        rows = list(read_csv(out).values())
        assert [row["file"] for row in rows] == [f"{source.name}[{i}]" for i in range(COUNT)]
        got = np.stack([probabilities_of(row) for row in rows])
        np.testing.assert_allclose(got, expected[:COUNT], atol=2e-6, err_msg=source.name)


def test_conversions_and_refusals(tmp_path):
    from PIL import Image

    from mnistflow import predict

    digit = np.zeros((28, 28), np.uint8)
    digit[4:24, 12:16] = 255  # a "1", 20 pixels tall
    # 56x56 black on white: inverted, fitted into 20x20 and centred by its mass.
    big = 255 - np.kron(digit, np.ones((2, 2), np.uint8))
    converted, done = predict.to_mnist(big)
    assert done[0].startswith("inverted") and "56x56 fitted to 20x20" in done[1]
    rows, cols = np.nonzero(converted >= predict.INK)
    assert rows.max() - rows.min() + 1 <= 20 and rows.max() - rows.min() + 1 >= 19
    assert abs(np.average(np.arange(28), weights=converted.sum(axis=1)) - 13.5) <= 1
    assert abs(np.average(np.arange(28), weights=converted.sum(axis=0)) - 13.5) <= 1
    with pytest.raises(ValueError, match="no ink"):
        predict.to_mnist(np.zeros((40, 40), np.uint8))

    (tmp_path / "blank.png").write_bytes(b"")
    Image.fromarray(digit).save(tmp_path / "one.png")
    Image.new("RGBA", (30, 30), (0, 0, 0, 0)).save(tmp_path / "empty-transparent.png")
    images = {image.name: image for image in predict.collect(tmp_path, "auto")}
    assert images["one.png"].pixels is not None and images["one.png"].note == ""
    assert images["blank.png"].pixels is None
    assert "no ink" in images["empty-transparent.png"].note
    with pytest.raises(predict.PredictInputError, match="does not exist"):
        predict.collect(tmp_path / "missing", "auto")
    np.save(tmp_path / "wrong.npy", np.zeros((2, 3, 4, 5)))
    with pytest.raises(predict.PredictInputError, match=r"shape \(2, 3, 4, 5\)"):
        predict.collect(tmp_path / "wrong.npy", "auto")
    (tmp_path / "text.idx").write_text("hello world, not IDX")
    with pytest.raises(predict.PredictInputError, match="text.idx"):
        predict.collect(tmp_path / "text.idx", "auto")
