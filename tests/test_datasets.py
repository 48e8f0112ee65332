"""Any image-classification dataset: image folders, save_to_disk copies and pinned Hub ids, searched end to end,
with one-line errors before any training (no network: local folders and an offline `datasets` cache)."""

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import evolve
from gptnas.config import save_config
from gptnas.errors import GptnasError
from gptnas.evaluators import get_evaluator
from gptnas.search.config import EvolveConfig
from gptnas.spaces import get_space
from gptnas.spaces.cifar import Block, CifarArch
from gptnas.training.data import dataset_source, load_images
from gptnas.deploy.retrain import RetrainSettings, retrain

ROOT = Path(__file__).resolve().parents[1]
COMMIT = "0123456789abcdef0123456789abcdef01234567"
# Three strided blocks first keep the network cheap: most of it runs at 1x1.
TINY = CifarArch(16, (Block("resnet_basic", 16, 2),) * 3 + (Block("resnet_basic", 16, 1),) * 7)
QUICK_SEARCH = ["--space", "cifar", "--strategy", "ga", "--population", "2", "--generations", "0", "--epochs", "1",
                "--min_steps", "0", "--batch_size", "32", "--max_train_examples", "64", "--device", "cpu",
                "--workers", "1"]


@pytest.fixture(autouse=True, scope="module")
def datasets_cache(tmp_path_factory):
    """`datasets` caches what it reads from image folders: here, not in the user's cache."""
    import datasets

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path_factory.mktemp("hf_datasets"))
        yield


def digits(classes=range(10)):
    """scikit-learn's digits as 8-bit grey 8x8 pixels (the bundled dataset's own values) and labels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    keep = np.isin(data.target, list(classes))
    return (data.images[keep] / 16 * 255).round().astype(np.uint8), data.target[keep]


def write_folder(root: Path, images, labels, names=None) -> Path:
    """An imagefolder: one subfolder per class, one PNG per image."""
    for i, (image, label) in enumerate(zip(images, labels)):
        folder = root / (names[label] if names else str(label))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def digits_folder(tmp_path_factory):
    return write_folder(tmp_path_factory.mktemp("digits") / "folder", *digits())


def build_line(run: Path) -> str:
    return json.loads((run / "best.json").read_text())["build"]


def one_error_line(capsys) -> str:
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, errors
    return errors[0]


# ---------------------------------------------------------------- the three ways to give data


def test_an_image_folder_is_searched_end_to_end(tmp_path, digits_folder, caplog):
    run = tmp_path / "run"
    started = time.perf_counter()
    with caplog.at_level(logging.INFO, logger="gptnas.training.data"):
        assert evolve.main([*QUICK_SEARCH, "--dataset", str(digits_folder), "--output_dir", str(run)]) == 0
    logging.getLogger(__name__).info("image folder search: %.1f s", time.perf_counter() - started)
    assert "num_classes=10" in build_line(run)
    assert "fixed 20% of train held out as the test split" in caplog.text  # digits has no test split
    source = json.loads((run / "sources.json").read_text())["evaluator"]
    assert source["data_dir"] == str(digits_folder.resolve()) and source["hub_id"] is None
    assert source["files"] == 1797 and len(source["listing_sha256"]) == 64

    data = load_images(str(digits_folder))  # what the search trained on: the digits' own pixels, in RGB
    bundled = load_images("digits")
    assert data.train_images.shape[1:] == (3, 8, 8) and data.num_classes == 10
    assert len(data.test_labels) == len(bundled.test_labels)
    assert sorted(data.train_images.flatten(1).sum(1).tolist() + data.test_images.flatten(1).sum(1).tolist()) == \
        sorted(bundled.train_images.flatten(1).sum(1).tolist() + bundled.test_images.flatten(1).sum(1).tolist())
    assert torch.equal(data.train_images[:, 0], data.train_images[:, 2])  # grey -> equal channels


def test_a_three_class_folder_with_train_and_test_subfolders(tmp_path):
    images, labels = digits(classes=(0, 1, 2))
    names = {0: "zero", 1: "one", 2: "two"}
    write_folder(tmp_path / "abc" / "train", images[:400], labels[:400], names)
    write_folder(tmp_path / "abc" / "test", images[400:], labels[400:], names)
    folder = str(tmp_path / "abc")
    train = get_evaluator("train", "cifar", folder, device="cpu", epochs=1, min_steps=0)
    proxy = get_evaluator("proxy", "cifar", folder, device="cpu")
    assert train.num_classes == proxy.num_classes == 3
    data = load_images(folder)
    assert len(data.train_labels) == 400 and len(data.test_labels) == len(labels) - 400  # its own test split
    assert sorted(set(data.test_labels.tolist())) == [0, 1, 2]


def test_a_save_to_disk_copy_with_its_own_columns_is_evaluated_and_retrained(tmp_path):
    """Columns named by flags, string labels (three classes, mapped in sorted order), a validation split as the
    test split; retraining reads the same options from the run's config.yaml."""
    import datasets

    images, labels = digits(classes=(3, 5, 8))
    words = np.array(["three", "five", "eight"])[np.searchsorted([3, 5, 8], labels)]
    full = datasets.Dataset.from_dict({"pixels": [Image.fromarray(i) for i in images], "digit": words.tolist()})
    saved = tmp_path / "saved"
    datasets.DatasetDict(train=full.select(range(400)), validation=full.select(range(400, len(full)))).save_to_disk(saved)
    options = {"image_column": "pixels", "label_column": "digit"}
    evaluator = get_evaluator("train", "cifar", str(saved), **options, epochs=1, min_steps=0, max_train_examples=64, device="cpu")
    assert evaluator.num_classes == 3 and evaluator.evaluate("cifar", TINY).status == "ok"
    data = load_images(str(saved), **options)
    assert data.train_labels[:5].tolist() == [["eight", "five", "three"].index(w) for w in words[:5]]
    assert len(data.test_labels) == len(full) - 400

    run = tmp_path / "run"
    run.mkdir()
    save_config(EvolveConfig.from_flags(dict(dataset=str(saved), **options, output_dir=str(run))), run / "config.yaml")
    (run / "best.json").write_text(json.dumps({"key": get_space("cifar").key(TINY)}))
    result = retrain(run, RetrainSettings(epochs=1, batch_size=32, max_train_examples=64, device="cpu"))
    assert result["dataset"] == str(saved) and result["train_examples"] == 64
    assert result["params"] == sum(p.numel() for p in get_space("cifar").build_model(TINY, 3).parameters())


def test_mixed_modes_and_sizes_become_rgb_at_one_size(tmp_path, caplog):
    rgba = Image.fromarray(np.full((12, 12, 4), 255, np.uint8), "RGBA")
    gray = Image.fromarray(np.full((10, 10), 100, np.uint8), "L")
    palette = Image.fromarray(np.full((12, 12, 3), (255, 0, 0), np.uint8)).convert("P")
    for i, (image, name) in enumerate([(rgba, "a"), (gray, "a"), (palette, "b"), (gray, "b"), (rgba, "c")] * 2):
        (tmp_path / "mixed" / name).mkdir(parents=True, exist_ok=True)
        image.save(tmp_path / "mixed" / name / f"{i}.png")
    with caplog.at_level(logging.WARNING, logger="gptnas.training.data"):
        data = load_images(str(tmp_path / "mixed"), None, 32)
    assert "--image_size" in caplog.text and data.train_images.shape[1:] == (3, 32, 32)  # the space's size
    all_images = torch.cat([data.train_images, data.test_images])
    pixels = {tuple(image[:, 16, 16].tolist()) for image in all_images}
    assert pixels == {(255, 255, 255), (100, 100, 100), (255, 0, 0)}  # RGBA, grey and palette read as RGB
    assert load_images(str(tmp_path / "mixed"), image_size=16).train_images.shape[1:] == (3, 16, 16)


# ---------------------------------------------------------------- one line, before any training


def test_a_wrong_label_column_fails_in_one_line_and_leaves_no_run_directory(tmp_path, digits_folder, capsys):
    run = tmp_path / "run"
    assert evolve.main([*QUICK_SEARCH, "--dataset", str(digits_folder), "--label_column", "digit",
                        "--output_dir", str(run)]) == 2
    error = one_error_line(capsys)
    assert "'digit'" in error and "its columns: image, label" in error
    assert not run.exists()


def test_no_label_column_lists_the_columns(tmp_path, capsys):
    import datasets

    datasets.Dataset.from_dict({"image": [np.zeros((8, 8), np.uint8)] * 4, "target": [0, 1] * 2}).save_to_disk(
        tmp_path / "saved")
    assert evolve.main([*QUICK_SEARCH, "--dataset", str(tmp_path / "saved"), "--output_dir", str(tmp_path / "run")]) == 2
    error = one_error_line(capsys)
    assert "no label column" in error and "its columns: image, target" in error and "--label_column" in error
    assert not (tmp_path / "run").exists()


def test_one_class_is_refused_in_one_line(tmp_path, capsys):
    images, labels = digits(classes=(7,))
    folder = write_folder(tmp_path / "sevens", images[:20], labels[:20])
    assert evolve.main([*QUICK_SEARCH, "--dataset", str(folder), "--output_dir", str(tmp_path / "run")]) == 2
    assert "one class only (7)" in one_error_line(capsys)
    assert not (tmp_path / "run").exists()


def test_unreadable_data_is_refused_in_one_line(tmp_path, digits_folder, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(digits_folder, broken)
    (broken / "3" / "not-a-picture.png").write_bytes(b"this is no PNG")
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [(broken, "not-a-picture.png"), (empty, "could not read"), (tmp_path / "missing", "does not exist")]
    for folder, expected in cases:
        assert evolve.main([*QUICK_SEARCH, "--dataset", str(folder), "--output_dir", str(tmp_path / "run")]) == 2
        assert expected in one_error_line(capsys)
        assert not (tmp_path / "run").exists()


def test_bad_names_and_options_are_refused_before_any_data_is_read():
    with pytest.raises(GptnasError, match="a Hub dataset id"):
        get_evaluator("train", "cifar", "mnist")
    with pytest.raises(GptnasError, match="image_size must be >= 1"):
        get_evaluator("train", "cifar", "digits", image_size=0)
    with pytest.raises(GptnasError, match="dataset_revision pins a Hub dataset"):
        load_images("cifar10", "/tmp", revision="main")


# ---------------------------------------------------------------- a pinned Hub dataset


def test_dataset_revision_reaches_load_dataset_and_a_cached_copy_of_another_commit_is_refused(tmp_path):
    """uoft-cs/cifar10 as `datasets` caches it after a download (<name>/<config>/<version>/<commit>/), offline:
    the pinned commit loads (and is recorded); another pinned commit stops the run in one line."""
    import datasets
    from datasets.packaged_modules.parquet.parquet import Parquet

    features = datasets.Features(img=datasets.Image(), label=datasets.ClassLabel(names=["cat", "dog", "emu"]))
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("test", 6)):
        images = [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(n)]
        datasets.Dataset.from_dict({"img": images, "label": [i % 3 for i in range(n)]}, features=features).to_parquet(
            tmp_path / f"{split}.parquet")
    Parquet(cache_dir=str(tmp_path / "build"), dataset_name="cifar10", config_name="plain_text", hash=COMMIT,
            data_files={split: str(tmp_path / f"{split}.parquet") for split in ("train", "test")}).download_and_prepare()
    built = next((tmp_path / "build").glob(f"cifar10/plain_text*/0.0.0/{COMMIT}"))
    shutil.copytree(built, tmp_path / "cache" / "uoft-cs___cifar10" / "plain_text" / "0.0.0" / COMMIT)
    env = {**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    code = (
        "import json, evolve\n"
        "from gptnas.training.data import dataset_source, load_images\n"
        f"data = load_images('uoft-cs/cifar10', revision='{COMMIT}')\n"
        f"print(json.dumps([data.num_classes, list(data.train_images.shape), dataset_source('uoft-cs/cifar10')]))\n"
        f"evolve.main(['--space', 'cifar', '--dataset', 'uoft-cs/cifar10', '--dataset_revision', '{'f' * 40}', "
        f"'--output_dir', '{tmp_path / 'run'}'])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, cwd=ROOT,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    num_classes, shape, source = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("[")))
    assert num_classes == 3 and shape == [12, 3, 32, 32]
    assert source["hub_id"] == "uoft-cs/cifar10" and source["revision"] == COMMIT
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"commit {COMMIT}, not the pinned --dataset_revision {'f' * 40}" in errors[0]
    assert not (tmp_path / "run").exists()


def test_the_source_of_a_folder_counts_and_hashes_its_files(tmp_path):
    images, labels = digits(classes=(0, 1))
    folder = write_folder(tmp_path / "two", images[:30], labels[:30])
    shutil.copytree(folder, tmp_path / "fewer")
    (tmp_path / "fewer" / "1" / "29.png").unlink()
    whole, fewer = dataset_source(str(folder)), dataset_source(str(tmp_path / "fewer"))
    assert (whole["files"], fewer["files"]) == (30, 29) and whole["listing_sha256"] != fewer["listing_sha256"]
    assert whole["data_dir"] == str(folder.resolve()) and whole["revision"] is None
