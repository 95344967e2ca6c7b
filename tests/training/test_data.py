"""The readers, on small files in every official form that the tests write themselves."""

from __future__ import annotations

import io
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.classes import CLASS_NAMES
from training.data import DataError, load_dataset, stratified_split, whitening_sample

RNG = np.random.default_rng(7)


def official_batch(n: int, seed: int) -> tuple[dict[bytes, object], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(n) % 10
    # The official layout: each row is 1024 red, 1024 green, then 1024 blue values.
    data = images.transpose(0, 3, 1, 2).reshape(n, 3072)
    return {b"batch_label": b"test", b"labels": labels.tolist(), b"data": data, b"filenames": []}, images, labels


def write_batches_py(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train_x, train_y = [], []
    for i in range(1, 6):
        entry, x, y = official_batch(20, i)
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(entry))
        train_x.append(x)
        train_y.append(y)
    entry, test_x, test_y = official_batch(10, 99)
    (folder / "test_batch").write_bytes(pickle.dumps(entry))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [c.encode() for c in CLASS_NAMES]}))
    return np.concatenate(train_x), np.concatenate(train_y), test_x, test_y


def write_tree(root: Path, per_class: int = 3, fmt: str = "PNG", split_dirs: bool = True) -> dict[str, np.ndarray]:
    written: dict[str, np.ndarray] = {}
    for split in ("train", "test") if split_dirs else ("",):
        for cls in CLASS_NAMES:
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                path = folder / f"{i:04d}.{fmt.lower()}"
                Image.fromarray(pixels).save(path, format=fmt)
                written[str(path.relative_to(root))] = pixels
    return written


def test_official_folder(tmp_path: Path) -> None:
    train_x, train_y, test_x, test_y = write_batches_py(tmp_path)
    ds = load_dataset(tmp_path / "cifar-10-batches-py", "train", cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(ds.images, train_x)
    np.testing.assert_array_equal(ds.labels, train_y)
    test = load_dataset(tmp_path / "cifar-10-batches-py", "test", cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(test.images, test_x)
    np.testing.assert_array_equal(test.labels, test_y)


def test_official_tar_gz_and_cache(tmp_path: Path) -> None:
    train_x, train_y, _, _ = write_batches_py(tmp_path / "src")
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    cache = tmp_path / "cache"
    first = load_dataset(archive, "train", cache_dir=cache)
    np.testing.assert_array_equal(first.images, train_x)
    assert len(list(cache.glob("*.npz"))) == 1
    # The cache is keyed by content: a second load reads it; a changed archive does not.
    second = load_dataset(archive, "train", cache_dir=cache)
    np.testing.assert_array_equal(second.images, train_x)
    assert second.sha256 == first.sha256


def test_class_tree_folder_and_splits(tmp_path: Path) -> None:
    written = write_tree(tmp_path / "tree")
    ds = load_dataset(tmp_path / "tree", "train", cache_dir=tmp_path / "cache")
    assert len(ds) == 30
    np.testing.assert_array_equal(np.bincount(ds.labels), [3] * 10)
    np.testing.assert_array_equal(ds.images[0], written["train/airplane/0000.png"])
    test = load_dataset(tmp_path / "tree", "test", cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(test.images[-1], written["test/truck/0002.png"])


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_class_tree_packed(tmp_path: Path, kind: str) -> None:
    written = write_tree(tmp_path / "tree", split_dirs=False)
    archive = tmp_path / f"images.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(archive, "w") as zf:
            for rel in written:
                zf.write(tmp_path / "tree" / rel, arcname=f"train/{rel}")
    else:
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(tmp_path / "tree", arcname="train")
    ds = load_dataset(archive, "train", cache_dir=tmp_path / "cache")
    assert len(ds) == 30
    np.testing.assert_array_equal(ds.images[3], written["automobile/0000.png"])
    assert ds.labels[3] == 1


def test_jpeg_tree_like_shared_data(tmp_path: Path) -> None:
    write_tree(tmp_path / "tree", per_class=2, fmt="JPEG", split_dirs=False)
    ds = load_dataset(tmp_path / "tree", "train", cache_dir=tmp_path / "cache")
    assert ds.images.shape == (20, 32, 32, 3) and ds.images.dtype == np.uint8


def test_missing_class(tmp_path: Path) -> None:
    write_tree(tmp_path / "tree", split_dirs=False)
    for f in (tmp_path / "tree" / "frog").iterdir():
        f.unlink()
    (tmp_path / "tree" / "frog").rmdir()
    with pytest.raises(DataError, match="missing class folder.*frog"):
        load_dataset(tmp_path / "tree", cache_dir=tmp_path / "cache")


def test_unreadable_file_is_named(tmp_path: Path) -> None:
    write_tree(tmp_path / "tree", split_dirs=False)
    (tmp_path / "tree" / "cat" / "0001.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"cat/0001\.png: unreadable image"):
        load_dataset(tmp_path / "tree", cache_dir=tmp_path / "cache")


def test_wrong_shape_is_named(tmp_path: Path) -> None:
    write_tree(tmp_path / "tree", split_dirs=False)
    Image.new("RGB", (40, 32)).save(tmp_path / "tree" / "dog" / "0002.png")
    with pytest.raises(DataError, match=r"dog/0002\.png: expected a 32x32 image, got 40x32"):
        load_dataset(tmp_path / "tree", cache_dir=tmp_path / "cache")


def test_corrupt_archive(tmp_path: Path) -> None:
    archive = tmp_path / "broken.tar.gz"
    archive.write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 50)
    with pytest.raises(DataError, match=r"broken\.tar\.gz: corrupt"):
        load_dataset(archive, cache_dir=tmp_path / "cache")


def test_bad_pickle_batch(tmp_path: Path) -> None:
    write_batches_py(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(
        pickle.dumps({b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4})
    )
    with pytest.raises(DataError, match=r"data_batch_3: expected data \[N, 3072\]"):
        load_dataset(tmp_path / "cifar-10-batches-py", cache_dir=tmp_path / "cache")


def test_missing_batch(tmp_path: Path) -> None:
    write_batches_py(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_5").unlink()
    with pytest.raises(DataError, match="missing data_batch_5"):
        load_dataset(tmp_path / "cifar-10-batches-py", cache_dir=tmp_path / "cache")


def test_nothing_usable(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="found neither"):
        load_dataset(tmp_path / "empty", cache_dir=tmp_path / "cache")
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(tmp_path / "nope", cache_dir=tmp_path / "cache")


def test_stratified_split_is_deterministic_balanced_and_disjoint() -> None:
    labels = np.repeat(np.arange(10), 100)
    train_a, val_a = stratified_split(labels, 150, seed=3)
    train_b, val_b = stratified_split(labels, 150, seed=3)
    np.testing.assert_array_equal(val_a, val_b)
    assert len(val_a) == 150 and len(train_a) == 850
    assert not set(train_a) & set(val_a)
    counts = np.bincount(labels[val_a], minlength=10)
    assert counts.min() >= 15 and counts.max() <= 15
    _, val_c = stratified_split(labels, 150, seed=4)
    assert set(val_c) != set(val_a)


def test_whitening_sample_spans_the_classes_of_a_class_ordered_split() -> None:
    # The split keeps class order: a 500-image prefix of its 4,500 training images holds
    # two classes, 450 and 50 (the shipped whitening stems were fitted on such a prefix).
    labels = np.repeat(np.arange(10), 500)
    train_idx, _ = stratified_split(labels, 500, seed=0)
    assert np.bincount(labels[train_idx][:500]).tolist() == [450, 50]
    sample = whitening_sample(labels[train_idx], 500, seed=0)
    counts = np.bincount(sample, minlength=10)
    assert len(sample) == 500 and counts.min() >= 25, counts
    np.testing.assert_array_equal(sample, whitening_sample(labels[train_idx], 500, seed=0))
    assert len(whitening_sample(labels[:30], 500, seed=0)) == 30


def test_shared_training_archive_reads(real_samples) -> None:
    # real_samples proves the archive is there; decoding all 50,000 is the CLI's job.
    from tests.conftest import SHARED_DATA

    with tarfile.open(SHARED_DATA) as tar:
        names = [m.name for m in tar.getmembers()[:20]]
    assert any(n.startswith("train/airplane/") for n in names)
    cls, name, data = real_samples[0]
    assert Image.open(io.BytesIO(data)).size == (32, 32)


def test_decoding_reports_progress(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A first decode of the real data takes about 20 s: the user sees it happen, on
    # stderr (stdout may carry a JSON report).
    for cls in CLASS_NAMES:
        (tmp_path / "tree" / cls).mkdir(parents=True)
        Image.fromarray(RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "tree" / cls / "0.png")
    load_dataset(tmp_path / "tree", cache_dir=tmp_path / "cache")
    first = capsys.readouterr()
    assert first.out == ""
    assert "decoding the train split" in first.err and "10/10 images decoded (truck done)" in first.err
    assert "decoded 10 images" in first.err
    load_dataset(tmp_path / "tree", cache_dir=tmp_path / "cache")
    assert capsys.readouterr().err == ""  # the cache: nothing to report
