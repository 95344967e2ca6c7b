"""Read CIFAR-10 from every form a user has and cache the decoded arrays.

Sources: the official `cifar-10-batches-py` folder or its `cifar-10-python.tar.gz`;
a class-folder tree (`[train|test/]<class>/*.jpg|png...`) unpacked or packed as
.tar.gz/.tgz/.zip; or `keras` (keras.datasets.cifar10, which needs the internet).
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import pickle
import sys
import tarfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, UnidentifiedImageError

from model.classes import CLASS_NAMES, IMAGE_SHAPE

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".tif", ".tiff"}
SPLITS = ("train", "test")
CACHE_FORMAT = 1  # bump when the decoded layout changes, so old caches are ignored


class DataError(Exception):
    """The data source is missing, malformed or incomplete; the message names the file."""


@dataclass(frozen=True)
class Dataset:
    """Decoded images (uint8 [N, 32, 32, 3]) and labels (int64 [N]) of one split."""

    images: np.ndarray
    labels: np.ndarray
    source: str
    sha256: str

    def __len__(self) -> int:
        return len(self.labels)


def _progress(message: str) -> None:
    # stderr: stdout may carry a report (`evaluate --json`).
    print(message, file=sys.stderr, flush=True)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cifar10-service"


def load_dataset(source: str | Path, split: str = "train", cache_dir: Path | None = None) -> Dataset:
    """Load `split` ("train" or "test") of a CIFAR-10 source, decoding once and caching."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if str(source) == "keras":
        return _load_keras(split)
    path = Path(source)
    if not path.exists():
        raise DataError(f"data source {path} does not exist")
    digest = _content_sha256(path)
    cache = (cache_dir or default_cache_dir()) / f"cifar10-{digest[:20]}-{split}-v{CACHE_FORMAT}.npz"
    if cache.is_file():
        with np.load(cache) as data:
            return Dataset(data["images"], data["labels"], str(path), digest)
    _progress(f"decoding the {split} split of {path} (once: later runs read {cache})")
    started = time.perf_counter()
    images, labels = _decode(path, split)
    _validate(images, labels, str(path))
    _progress(f"decoded {len(images)} images in {time.perf_counter() - started:.0f} s")
    cache.parent.mkdir(parents=True, exist_ok=True)
    # Write to a temporary name, then rename: a crash never leaves half a cache behind.
    tmp = cache.with_name(cache.name + f".{os.getpid()}.tmp.npz")
    np.savez(tmp, images=images, labels=labels)
    tmp.replace(cache)
    return Dataset(images, labels, str(path), digest)


def _content_sha256(path: Path) -> str:
    h = hashlib.sha256()
    if path.is_file():
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(file.relative_to(path)).encode())
        h.update(file.read_bytes())
    return h.hexdigest()


def _decode(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    if path.is_dir():
        return _decode_members(_dir_members(path), split, str(path))
    name = path.name.lower()
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        try:
            with tarfile.open(path) as tar:
                return _decode_members(_tar_members(tar), split, str(path))
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise DataError(f"{path}: corrupt or unreadable tar archive ({exc})") from exc
    if name.endswith(".zip"):
        try:
            with zipfile.ZipFile(path) as zf:
                return _decode_members(_zip_members(zf), split, str(path))
        except (zipfile.BadZipFile, EOFError, OSError) as exc:
            raise DataError(f"{path}: corrupt or unreadable zip archive ({exc})") from exc
    raise DataError(f"{path}: not a folder, .tar.gz, .tgz, .tar or .zip")


# A member is (posix path inside the source, a callable returning its bytes).
Member = tuple[PurePosixPath, Callable[[], bytes]]


def _dir_members(root: Path) -> Iterator[Member]:
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        yield PurePosixPath(file.relative_to(root).as_posix()), file.read_bytes


def _tar_members(tar: tarfile.TarFile) -> Iterator[Member]:
    for info in tar:
        if info.isfile():
            data = tar.extractfile(info)
            assert data is not None  # isfile() members always have a payload
            content = data.read()
            yield PurePosixPath(info.name), functools.partial(bytes, content)


def _zip_members(zf: zipfile.ZipFile) -> Iterator[Member]:
    for info in zf.infolist():
        if not info.is_dir():
            yield PurePosixPath(info.filename), functools.partial(zf.read, info.filename)


def _decode_members(members: Iterator[Member], split: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode either the official pickle batches or a class-folder tree, whichever the
    source holds."""
    batches: dict[str, bytes] = {}
    tree: dict[str, list[tuple[str, bytes]]] = {}
    for count, (rel, read) in enumerate(members, 1):
        if count % 10_000 == 0:
            _progress(f"  {count} files read")
        if rel.name.startswith("data_batch_") or rel.name == "test_batch":
            batches[rel.name] = read()
        elif rel.suffix.lower() in IMAGE_SUFFIXES and len(rel.parts) >= 2:
            parts = rel.parts
            cls = parts[-2]
            # The tree may hold train/ and test/ folders; without them it is one split.
            if len(parts) >= 3 and parts[-3] in SPLITS and parts[-3] != split:
                continue
            tree.setdefault(cls, []).append((str(rel), read()))
    if batches:
        return _from_batches(batches, split, where)
    if tree:
        return _from_tree(tree, where)
    raise DataError(
        f"{where}: found neither CIFAR-10 batches (data_batch_1 ... test_batch) nor "
        f"class folders of images for split {split!r}"
    )


def _from_batches(batches: dict[str, bytes], split: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    wanted = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    missing = [name for name in wanted if name not in batches]
    if missing:
        raise DataError(f"{where}: missing {', '.join(missing)}")
    images, labels = [], []
    for name in wanted:
        try:
            entry = pickle.loads(batches[name], encoding="bytes")
            data = np.asarray(entry[b"data"], dtype=np.uint8)
            batch_labels = np.asarray(entry[b"labels"], dtype=np.int64)
        except Exception as exc:  # pickle raises many types on garbage
            raise DataError(f"{where}/{name}: not a CIFAR-10 pickle batch ({exc})") from exc
        if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(batch_labels):
            raise DataError(
                f"{where}/{name}: expected data [N, 3072] and N labels, got {data.shape} and {len(batch_labels)}"
            )
        # The official layout is channel-major: 1024 red, then green, then blue values.
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(batch_labels)
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)


def _from_tree(tree: dict[str, list[tuple[str, bytes]]], where: str) -> tuple[np.ndarray, np.ndarray]:
    unknown = sorted(set(tree) - set(CLASS_NAMES))
    if unknown:
        raise DataError(f"{where}: unknown class folder(s) {', '.join(unknown)}; expected {', '.join(CLASS_NAMES)}")
    missing = [c for c in CLASS_NAMES if c not in tree]
    if missing:
        raise DataError(f"{where}: missing class folder(s) {', '.join(missing)}")
    count = sum(len(files) for files in tree.values())
    images = np.empty((count, *IMAGE_SHAPE), dtype=np.uint8)
    labels = np.empty(count, dtype=np.int64)
    i = 0
    for label, cls in enumerate(CLASS_NAMES):
        for name, content in sorted(tree[cls]):
            images[i] = _decode_image(content, f"{where}:{name}")
            labels[i] = label
            i += 1
        _progress(f"  {i}/{count} images decoded ({cls} done)")
    return images, labels


def _decode_image(content: bytes, name: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(content)) as img:
            img.load()
            rgb = img.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"{name}: unreadable image ({exc})") from exc
    if rgb.size != IMAGE_SHAPE[:2]:
        raise DataError(f"{name}: expected a 32x32 image, got {rgb.size[0]}x{rgb.size[1]}")
    return np.asarray(rgb, dtype=np.uint8)


def _validate(images: np.ndarray, labels: np.ndarray, where: str) -> None:
    if images.shape[1:] != IMAGE_SHAPE:
        raise DataError(f"{where}: images have shape {images.shape[1:]}, expected {IMAGE_SHAPE}")
    present = set(np.unique(labels).tolist())
    absent = [CLASS_NAMES[c] for c in range(len(CLASS_NAMES)) if c not in present]
    if absent:
        raise DataError(f"{where}: no images of class(es) {', '.join(absent)}")
    if labels.min() < 0 or labels.max() >= len(CLASS_NAMES):
        raise DataError(f"{where}: labels outside 0..{len(CLASS_NAMES) - 1}")


def _load_keras(split: str) -> Dataset:
    import keras  # only this source needs it, and it may download

    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
    except Exception as exc:  # offline machines fail in several ways
        raise DataError(f"keras.datasets.cifar10 could not load (offline?): {exc}") from exc
    x, y = (x_train, y_train) if split == "train" else (x_test, y_test)
    return Dataset(x.astype(np.uint8), y.reshape(-1).astype(np.int64), "keras.datasets.cifar10", "keras")


def whitening_sample(images: np.ndarray, n: int, seed: int) -> np.ndarray:
    """`n` images drawn without replacement, for fitting a whitening stem. Not a prefix:
    the decoded set and its split keep images in class order, so the first 5,000 of the
    training part are 4,500 airplanes and 500 automobiles, and a whitening fitted on
    them decorrelates those classes' patches rather than the data's."""
    pick = np.random.default_rng(seed).choice(len(images), size=min(n, len(images)), replace=False)
    return images[np.sort(pick)]


def stratified_split(labels: np.ndarray, val_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic, class-balanced (train_idx, val_idx); the two never overlap."""
    if not 0 <= val_size < len(labels):
        raise DataError(f"validation size {val_size} must be in [0, {len(labels)})")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    # Each class gives its proportional share; rounding leftovers go to the largest classes.
    exact = counts * val_size / len(labels)
    take = np.floor(exact).astype(int)
    for idx in np.argsort(-(exact - take), kind="stable")[: val_size - take.sum()]:
        take[idx] += 1
    val = []
    for cls, n in zip(classes, take, strict=True):
        members = np.flatnonzero(labels == cls)
        val.append(rng.permutation(members)[:n])
    val_idx = np.sort(np.concatenate(val)) if val else np.empty(0, dtype=np.int64)
    train_idx = np.setdiff1d(np.arange(len(labels)), val_idx)
    return train_idx, val_idx
