"""Readers of user image files: each format is written for real into tmp_path, read back and compared exactly,
and each corrupt variant must fail with a UserError that says what is wrong."""
from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genlab.data import readers, registry, sources
from genlab.errors import UserError

N, H, W = 5, 6, 7  # H != W so a swapped axis shows up
RNG = np.random.default_rng(0)


def pixels(*shape: int) -> np.ndarray:
    return RNG.integers(0, 256, size=shape, dtype=np.uint8)


# ---------------------------------------------------------------------------------------------- idx


def idx_bytes(a: np.ndarray, code: int = 0x08) -> bytes:
    return b"\0\0" + bytes([code, a.ndim]) + struct.pack(f">{a.ndim}i", *a.shape) + a.tobytes()


def write(path, data: bytes, gz: bool = False):
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


@pytest.fixture
def mnist_like():
    return pixels(N, H, W), np.arange(N, dtype=np.uint8) % 3, pixels(2, H, W), np.array([2, 0], np.uint8)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, mnist_like, gz):
    x, y, xt, yt = mnist_like
    write(tmp_path / "train-images-idx3-ubyte", idx_bytes(x), gz)
    write(tmp_path / "train-labels-idx1-ubyte", idx_bytes(y), gz)
    write(tmp_path / "t10k-images-idx3-ubyte", idx_bytes(xt), gz)
    write(tmp_path / "t10k-labels-idx1-ubyte", idx_bytes(yt), gz)
    s = readers.idx(tmp_path)
    assert s.train.images.dtype == torch.uint8 and s.train.images.shape == (N, 1, H, W)
    assert np.array_equal(s.train.images[:, 0].numpy(), x)
    assert s.train.labels.dtype == torch.int64 and s.train.labels.tolist() == y.tolist()
    assert np.array_equal(s.test.images[:, 0].numpy(), xt) and s.test.labels.tolist() == [2, 0]
    assert s.train.classes is None


def test_idx_dotted_names_without_test_split(tmp_path, mnist_like):
    x, y, _, _ = mnist_like
    write(tmp_path / "train-images.idx3-ubyte", idx_bytes(x))
    write(tmp_path / "train-labels.idx1-ubyte", idx_bytes(y))
    s = readers.idx(tmp_path)
    assert np.array_equal(s.train.images[:, 0].numpy(), x) and s.train.labels.tolist() == y.tolist()
    assert s.test is None


def test_idx_prefers_plain_file_over_its_gzip(tmp_path, mnist_like):
    x = mnist_like[0]
    write(tmp_path / "train-images-idx3-ubyte", idx_bytes(x))
    write(tmp_path / "train-images-idx3-ubyte", idx_bytes(x[:2]), gz=True)
    assert len(readers.idx(tmp_path).train) == N


def test_idx_single_images_file_is_unlabelled(tmp_path, mnist_like):
    f = write(tmp_path / "images-idx3-ubyte", idx_bytes(mnist_like[0]), gz=True)
    s = readers.idx(f)
    assert np.array_equal(s.train.images[:, 0].numpy(), mnist_like[0])
    assert s.train.labels is None and s.test is None


def test_idx_through_sources_load(tmp_path, mnist_like):
    x, y, _, _ = mnist_like
    write(tmp_path / "train-images-idx3-ubyte", idx_bytes(x), gz=True)
    write(tmp_path / "train-labels-idx1-ubyte", idx_bytes(y), gz=True)
    s = sources.load("idx:" + str(tmp_path))
    assert s.train.shape == (1, H, W) and s.train.labels.tolist() == y.tolist()
    assert {"idx", "cifar", "folder", "npz"} <= set(registry.USER)


@pytest.mark.parametrize(
    "images, labels, match",
    [
        (b"\x1f\x8b\x08\x03" + bytes(20), None, "not an IDX file: bad magic number 1f8b0803"),
        (idx_bytes(np.zeros((2, 3, 4), np.float32), code=0x0D), None, "float32 values; only uint8"),
        (idx_bytes(np.zeros((2, 12), np.uint8)), None, "has 2 dimensions but IDX images"),
        (idx_bytes(np.zeros((2, 3, 4), np.uint8))[:-1], None, r"truncated or corrupt: its header says 2x3x4 = 24"),
        (idx_bytes(np.zeros((2, 3, 4), np.uint8))[:10], None, "truncated: it ends inside its header"),
        (idx_bytes(np.zeros((2, 3, 4), np.uint8)), idx_bytes(np.zeros(3, np.uint8)), "found 3 labels for 2 images"),
        (idx_bytes(np.zeros((2, 3, 4), np.uint8)), idx_bytes(np.zeros((3, 1), np.uint8)), "IDX labels"),
        (b"\0\0\x08\x03" + struct.pack(">3i", 0, 28, 28), None, "sizes 0 x 28 x 28, and every size must be pos"),
        (b"\0\0\x08\x03" + struct.pack(">3i", 2, -3, 4) + bytes(24), None, "sizes 2 x -3 x 4"),
    ],
    ids=["magic", "dtype", "dims", "short-data", "short-header", "label-count", "label-dims", "zero-size",
         "negative-size"],
)
def test_idx_errors(tmp_path, images, labels, match):
    write(tmp_path / "train-images-idx3-ubyte", images)
    if labels is not None:
        write(tmp_path / "train-labels-idx1-ubyte", labels)
    with pytest.raises(UserError, match=match):
        readers.idx(tmp_path)


def test_idx_corrupt_gzip(tmp_path, mnist_like):
    good = gzip.compress(idx_bytes(mnist_like[0]))
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(UserError, match="train-images-idx3-ubyte.gz' is not a valid gzip file"):
        readers.idx(tmp_path)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(idx_bytes(mnist_like[0]))  # named .gz, not gzipped
    with pytest.raises(UserError, match="not a valid gzip file"):
        readers.idx(tmp_path)


def test_a_gzip_bomb_is_refused_before_it_is_inflated(tmp_path, monkeypatch):
    """An IDX .gz that inflates past a quarter of the machine's memory stops at that bound, whatever its header."""
    header = b"\0\0\x08\x03" + struct.pack(">3i", 1000, 100, 100)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(header + bytes(10_000_000)))
    monkeypatch.setattr(readers, "machine_memory", lambda: 16 * 2**20)  # a 16 MiB machine: limit 4 MiB
    with pytest.raises(UserError, match=r"inflates to more than 0.0 GiB \(it is [\d,]+ bytes compressed\)"):
        readers.idx(tmp_path)
    monkeypatch.setattr(readers, "machine_memory", lambda: 64 * 2**20)
    assert readers.idx(tmp_path).train.shape == (1, 100, 100)


def test_a_label_that_implies_absurdly_many_classes_is_refused(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 8, 8), np.uint8), y=np.array([0, 1, 10**12]))
    with pytest.raises(UserError, match="label 1000000000000 implies 1,000,000,000,001 classes"):
        readers.npz(tmp_path / "d.npz")


def test_idx_folder_without_train_images(tmp_path, mnist_like):
    write(tmp_path / "t10k-images-idx3-ubyte", idx_bytes(mnist_like[0]))
    with pytest.raises(UserError, match="no train images file"):
        readers.idx(tmp_path)


def test_idx_ambiguous_files(tmp_path, mnist_like):
    write(tmp_path / "train-images-idx3-ubyte", idx_bytes(mnist_like[0]))
    write(tmp_path / "train-images-copy", idx_bytes(mnist_like[0]))
    with pytest.raises(UserError, match="several files .* keep only one"):
        readers.idx(tmp_path)


# -------------------------------------------------------------------------------------------- cifar


def cifar_batch(n: int, label_key: bytes = b"labels", labels=None, extra: dict | None = None):
    """A batch as the CIFAR 'python version' stores it: a protocol-2 pickle of a dict with bytes keys."""
    data = pixels(n, 3072)
    labels = list(range(n)) if labels is None else labels
    d = {b"batch_label": b"batch", label_key: labels, b"data": data, b"filenames": [b"f.png"] * n, **(extra or {})}
    return pickle.dumps(d, protocol=2), data, labels


def as_images(data: np.ndarray) -> np.ndarray:
    """Reference layout: pixel (c, row, col) of image i is data[i, 1024 c + 32 row + col]."""
    out = np.zeros((len(data), 3, 32, 32), np.uint8)
    for c in range(3):
        for r in range(32):
            out[:, c, r, :] = data[:, 1024 * c + 32 * r : 1024 * c + 32 * r + 32]
    return out


def test_cifar10_round_trip_from_parent_folder(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    datas, labels = [], []
    for i, n in enumerate((3, 2), start=1):
        raw, data, y = cifar_batch(n, labels=[(i + k) % 4 for k in range(n)])
        (root / f"data_batch_{i}").write_bytes(raw)
        datas.append(data)
        labels += y
    raw, test_data, test_labels = cifar_batch(2, labels=[3, 1])
    (root / "test_batch").write_bytes(raw)
    names = [b"airplane", b"bird", b"cat", b"deer"]
    (root / "batches.meta").write_bytes(pickle.dumps({b"label_names": names, b"num_vis": 3072}, protocol=2))
    s = readers.cifar(tmp_path)
    assert s.train.images.dtype == torch.uint8 and s.train.images.shape == (5, 3, 32, 32)
    assert np.array_equal(s.train.images.numpy(), as_images(np.concatenate(datas)))
    assert s.train.labels.tolist() == labels and s.train.classes == ["airplane", "bird", "cat", "deer"]
    assert np.array_equal(s.test.images.numpy(), as_images(test_data)) and s.test.labels.tolist() == test_labels


def test_cifar100_uses_fine_labels(tmp_path):
    raw, data, y = cifar_batch(4, b"fine_labels", [0, 2, 1, 2], {b"coarse_labels": [9, 9, 9, 9]})
    (tmp_path / "train").write_bytes(raw)
    names = [b"apple", b"bear", b"cloud"]
    (tmp_path / "meta").write_bytes(pickle.dumps({b"fine_label_names": names, b"coarse_label_names": []}, protocol=2))
    s = readers.cifar(tmp_path)
    assert np.array_equal(s.train.images.numpy(), as_images(data))
    assert s.train.labels.tolist() == [0, 2, 1, 2] and s.train.classes == ["apple", "bear", "cloud"]
    assert s.test is None


def test_cifar_batch_pickled_by_numpy_1(tmp_path):
    """Old numpy names its array rebuilder numpy.core.multiarray._reconstruct; that one is allowed too."""
    raw, data, _ = cifar_batch(2)
    assert b"numpy._core.multiarray" in raw
    (tmp_path / "data_batch_1").write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    assert np.array_equal(readers.cifar(tmp_path).train.images.numpy(), as_images(data))


def test_cifar_refuses_a_pickle_that_runs_code(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "data_batch_1").write_bytes(f"cos\nsystem\n(S'touch {marker}'\ntR.".encode())
    with pytest.raises(UserError, match=r"data_batch_1' is not a CIFAR batch: it asks to load os\.system"):
        readers.cifar(tmp_path)
    assert not marker.exists()


def test_cifar_refuses_other_globals_inside_a_valid_batch(tmp_path):
    raw, _, _ = cifar_batch(2)
    (tmp_path / "data_batch_1").write_bytes(raw.replace(b"_codecs\nencode", b"builtins\neval"))
    with pytest.raises(UserError, match=r"asks to load builtins\.eval, so it will not be loaded"):
        readers.cifar(tmp_path)


def test_cifar_meta_without_names(tmp_path):
    (tmp_path / "data_batch_1").write_bytes(cifar_batch(2)[0])
    (tmp_path / "batches.meta").write_bytes(pickle.dumps({b"num_vis": 3072}, protocol=2))
    with pytest.raises(UserError, match="batches.meta' has no list of class names under 'label_names'"):
        readers.cifar(tmp_path)


def bad_data(data: np.ndarray | None = None) -> bytes:
    """A two-label batch with the given `data` entry, or none."""
    return pickle.dumps({b"labels": [0, 1]} | ({} if data is None else {b"data": data}), protocol=2)


@pytest.mark.parametrize(
    "content, match",
    [
        (b"this is not a pickle", "data_batch_1' is not a CIFAR batch: it cannot be read as a pickle"),
        (pickle.dumps([1, 2], protocol=2), "not a CIFAR batch: it holds a list, not a dict"),
        (bad_data(), "not a CIFAR batch: it has no 'data' entry"),
        (bad_data(data=np.zeros((2, 100), np.uint8)), r"N x 3072 .* got uint8 \(2, 100\)"),
        (bad_data(data=np.zeros((2, 3072), np.float32)), r"got float32 \(2, 3072\)"),
        (bad_data(data=np.zeros((3, 3072), np.uint8)), "found 2 labels for 3 images"),
    ],
    ids=["not-pickle", "not-dict", "no-data", "data-shape", "data-dtype", "label-count"],
)
def test_cifar_errors(tmp_path, content, match):
    (tmp_path / "data_batch_1").write_bytes(content)
    with pytest.raises(UserError, match=match):
        readers.cifar(tmp_path)


def test_cifar_label_beyond_class_names(tmp_path):
    (tmp_path / "data_batch_1").write_bytes(cifar_batch(2, labels=[0, 5])[0])
    (tmp_path / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"a", b"b"]}, protocol=2))
    with pytest.raises(UserError, match="label 5 is out of range for the 2 class names"):
        readers.cifar(tmp_path)


def test_cifar_without_batches(tmp_path):
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(UserError, match="no CIFAR batch files"):
        readers.cifar(tmp_path)


# ------------------------------------------------------------------------------------------- folder


def save(path, a: np.ndarray) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)
    return a


def test_folder_unlabelled_grey(tmp_path):
    a = [save(tmp_path / f"{i}.png", pixels(H, W)) for i in range(3)]
    (tmp_path / "notes.txt").write_text("ignored")
    s = readers.folder(tmp_path)
    assert s.train.images.shape == (3, 1, H, W)
    assert np.array_equal(s.train.images[:, 0].numpy(), np.stack(a))
    assert s.train.labels is None and s.test is None


def test_folder_class_subfolders_rgb(tmp_path):
    cat0 = save(tmp_path / "cat" / "a.PNG", pixels(H, W, 3))
    cat1 = save(tmp_path / "cat" / "b.bmp", pixels(H, W, 3))
    rgba = pixels(H, W, 4)
    save(tmp_path / "dog" / "c.png", rgba)
    (tmp_path / "empty").mkdir()
    s = readers.folder(tmp_path)
    assert s.train.images.shape == (3, 3, H, W)
    want = np.stack([cat0, cat1, rgba[..., :3]]).transpose(0, 3, 1, 2)
    assert np.array_equal(s.train.images.numpy(), want)
    assert s.train.labels.tolist() == [0, 0, 1] and s.train.classes == ["cat", "dog"]


def test_folder_grey_among_colour_becomes_rgb(tmp_path):
    grey = save(tmp_path / "a.png", pixels(H, W))
    colour = save(tmp_path / "b.png", pixels(H, W, 3))
    x = readers.folder(tmp_path).train.images
    assert x.shape == (2, 3, H, W)
    assert all(np.array_equal(x[0, c].numpy(), grey) for c in range(3))
    assert np.array_equal(x[1].numpy(), colour.transpose(2, 0, 1))


def test_folder_train_test_splits(tmp_path):
    for split, cls, n in (("train", "ant", 2), ("train", "bee", 1), ("test", "bee", 2)):
        for i in range(n):
            save(tmp_path / split / cls / f"{i}.png", pixels(H, W))
    t = save(tmp_path / "test" / "bee" / "9.png", pixels(H, W))
    s = readers.folder(tmp_path)
    assert s.train.labels.tolist() == [0, 0, 1] and s.train.classes == ["ant", "bee"]
    assert s.test.labels.tolist() == [1, 1, 1] and s.test.classes == ["ant", "bee"]
    assert np.array_equal(s.test.images[2, 0].numpy(), t)


def test_folder_empty_and_non_image_only(tmp_path):
    with pytest.raises(UserError, match="holds no images, neither directly nor in class subfolders"):
        readers.folder(tmp_path)
    (tmp_path / "data.csv").write_text("1,2")
    with pytest.raises(UserError, match=r"holds no images, only other files \(e.g. data.csv\)"):
        readers.folder(tmp_path)


def test_folder_unreadable_image_is_named(tmp_path):
    save(tmp_path / "a.png", pixels(H, W))
    (tmp_path / "b.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(UserError, match="cannot open image '.*b.jpg'"):
        readers.folder(tmp_path)


def test_folder_truncated_png(tmp_path):
    save(tmp_path / "a.png", pixels(H, W))
    raw = (tmp_path / "a.png").read_bytes()
    (tmp_path / "a.png").write_bytes(raw[: len(raw) - 30])
    with pytest.raises(UserError, match="cannot open image '.*a.png'"):
        readers.folder(tmp_path)


def test_folder_mixed_sizes(tmp_path):
    save(tmp_path / "a.png", pixels(H, W))
    save(tmp_path / "b.png", pixels(W, H))
    with pytest.raises(UserError, match=r"a.png' is 7x6 but '.*b.png' is 6x7 .* resize them to one size first"):
        readers.folder(tmp_path)


def test_folder_sixteen_bit(tmp_path):
    Image.fromarray(np.full((H, W), 1000, np.uint16)).save(tmp_path / "a.png")
    with pytest.raises(UserError, match="only 8-bit images are supported"):
        readers.folder(tmp_path)


def test_folder_mixed_layout_and_unknown_test_class(tmp_path):
    save(tmp_path / "train" / "ant" / "0.png", pixels(H, W))
    save(tmp_path / "test" / "wasp" / "0.png", pixels(H, W))
    with pytest.raises(UserError, match="has class folders not in .*train': wasp"):
        readers.folder(tmp_path)
    save(tmp_path / "train" / "loose.png", pixels(H, W))
    with pytest.raises(UserError, match=r"mixes images \(loose.png\) with class subfolders \(ant/\)"):
        readers.folder(tmp_path)
    (tmp_path / "train" / "loose.png").unlink()
    for f in (tmp_path / "test" / "wasp").iterdir():
        f.rename(tmp_path / "test" / f.name)
    with pytest.raises(UserError, match="must both use class subfolders, or neither"):
        readers.folder(tmp_path)


# ---------------------------------------------------------------------------------------------- npz


def test_npz_keras_layout_channels_last(tmp_path):
    x, xt = pixels(N, H, W, 3), pixels(2, H, W, 3)
    y = np.arange(N).reshape(N, 1)  # Keras CIFAR stores labels as N x 1
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=xt, y_test=np.array([4, 1]))
    s = readers.npz(tmp_path / "d.npz")
    assert s.train.images.shape == (N, 3, H, W)
    assert np.array_equal(s.train.images.numpy(), x.transpose(0, 3, 1, 2))
    assert s.train.labels.dtype == torch.int64 and s.train.labels.tolist() == list(range(N))
    assert np.array_equal(s.test.images.numpy(), xt.transpose(0, 3, 1, 2)) and s.test.labels.tolist() == [4, 1]


def test_npz_float_images_labels_keys(tmp_path):
    x = RNG.random((N, H, W)).astype(np.float32)
    x[0, 0, :2] = [0.0, 1.0]
    np.savez_compressed(tmp_path / "d.npz", images=x, labels=np.arange(N, dtype=np.int16))
    s = readers.npz(tmp_path / "d.npz")
    assert s.train.images.shape == (N, 1, H, W) and s.test is None
    assert np.array_equal(s.train.images[:, 0].numpy(), np.rint(x * 255.0).astype(np.uint8))
    assert s.train.images[0, 0, 0, :2].tolist() == [0, 255]


def test_npz_x_y_channels_first_ints(tmp_path):
    x = pixels(N, 3, H, W).astype(np.int64)
    np.savez(tmp_path / "d.npz", x=x, y=np.zeros(N, np.int32))
    s = readers.npz(tmp_path / "d.npz")
    assert s.train.images.dtype == torch.uint8 and np.array_equal(s.train.images.numpy(), x)
    assert s.train.labels.tolist() == [0] * N


def test_npy_images_only(tmp_path):
    x = pixels(N, H, W, 1)
    np.save(tmp_path / "x.npy", x)
    s = readers.npz(tmp_path / "x.npy")
    assert np.array_equal(s.train.images.numpy(), x.transpose(0, 3, 1, 2)) and s.train.labels is None


@pytest.mark.parametrize(
    "arrays, match",
    [
        ({"a": pixels(2, H, W), "b": np.zeros(2)}, r"no images under x_train, images or x \(found: a, b\)"),
        ({"x": np.full((2, H, W), 1.5)}, r"float images must lie in \[0, 1\], found 1.5"),
        ({"x": np.full((2, H, W), np.nan)}, r"float images must lie in \[0, 1\]"),
        ({"x": np.full((2, H, W), 300)}, "integer images must lie in 0..255, found 300"),
        ({"x": np.full((2, H, W), -1)}, "integer images must lie in 0..255, found -1"),
        ({"x": np.zeros((2, H, W), bool)}, "dtype bool are not supported"),
        ({"x": pixels(2, H * W)}, r"got 2 dimensions \(2, 42\)"),
        ({"x": pixels(2, 5, H, W)}, r"shape \(2, 5, 6, 7\) has no channel axis of size 1 or 3"),
        ({"x": pixels(0, H, W)}, r"\[x\]: holds no images"),
        ({"x": pixels(2, H, W), "y": np.zeros(3, np.int64)}, r"\[y\] \(labels of \[x\]\): found 3 labels for 2"),
        ({"x": pixels(2, H, W), "y": np.array([0.5, 1.0])}, "labels must be a flat list of integers, got float64"),
        ({"x": pixels(2, H, W), "y": np.array([0, -2])}, "labels must be >= 0, found -2"),
    ],
)
def test_npz_errors(tmp_path, arrays, match):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(UserError, match=match):
        readers.npz(tmp_path / "d.npz")


def test_npz_refuses_pickles_and_object_arrays(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "p.npy").write_bytes(f"cos\nsystem\n(S'touch {marker}'\ntR.".encode())
    with pytest.raises(UserError, match="p.npy' is neither a .npz nor a .npy file"):
        readers.npz(tmp_path / "p.npy")
    assert not marker.exists()
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(UserError, match="holds object arrays, which need pickle"):
        readers.npz(tmp_path / "o.npy")


def test_npz_corrupt_zip(tmp_path):
    np.savez(tmp_path / "d.npz", x=pixels(N, H, W))
    raw = (tmp_path / "d.npz").read_bytes()
    (tmp_path / "d.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(UserError, match="d.npz' is corrupt and cannot be read"):
        readers.npz(tmp_path / "d.npz")


def test_class_filters_keep_or_drop_classes_in_both_splits(tmp_path, capsys):
    from genlab.cli import main
    from genlab.data import DataConfig, open_splits
    from genlab.data.transforms import parse_classes

    assert parse_classes("0-2,7") == {0, 1, 2, 7} and parse_classes("") == set()
    s = open_splits(DataConfig(source="digits", classes="3,8"))
    assert set(s.train.labels.tolist()) == {3, 8} and set(s.test.labels.tolist()) == {3, 8}
    assert s.train.num_classes == 10  # labels keep their meaning
    s = open_splits(DataConfig(source="digits", exclude_classes="0-4"))
    assert set(s.train.labels.tolist()) == {5, 6, 7, 8, 9}
    for bad, says in (("data.classes=a", "class numbers"), ("data.classes=4-2", "not a range"),
                      ("data.classes=42", "no image")):
        code = main(["train", "vae", "--data", "digits", "--set", bad, "--out", str(tmp_path / "r"), "--quiet"])
        assert code == 2 and says in capsys.readouterr().err
    np.savez(tmp_path / "u.npz", x=np.zeros((4, 8, 8), np.uint8))
    code = main(["train", "vae", "--data", f"npz:{tmp_path / 'u.npz'}", "--set", "data.classes=1",
                 "--out", str(tmp_path / "u"), "--quiet"])
    assert code == 2 and "labelled source" in capsys.readouterr().err


# ---------------------------------------------------------------- genlab prepare / prepared:DIR
def _folder_of_pngs(root, n_train=7, n_test=3, colour=False):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            cls = "cat" if i % 2 else "dog"
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            shape = (6, 5, 3) if colour and i != 1 else (6, 5)  # one grey image among colour ones
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(root / split / cls / f"{i}.png")


@pytest.mark.parametrize("colour", [False, True])
def test_prepared_folder_equals_the_folder_it_came_from(tmp_path, colour, capsys):
    from genlab.cli import main
    from genlab.data import load

    _folder_of_pngs(tmp_path / "imgs", colour=colour)
    assert main(["prepare", f"folder:{tmp_path / 'imgs'}", "--out", str(tmp_path / "prep"), "--workers", "2"]) == 0
    a, b = load(f"folder:{tmp_path / 'imgs'}"), load(f"prepared:{tmp_path / 'prep'}")
    for x, y in ((a.train, b.train), (a.test, b.test)):
        assert torch.equal(x.images, y.images) and torch.equal(x.labels, y.labels) and x.classes == y.classes
    maps = Path("/proc/self/maps")
    if maps.exists():  # the images are a view of the mapped file, not a copy in memory
        assert str((tmp_path / "prep" / "train.u8").resolve()) in maps.read_text()
    assert main(["prepare", "digits", "--out", str(tmp_path / "prep")]) == 2  # never over an existing folder
    assert "already exists" in capsys.readouterr().err


def test_prepared_source_trains_and_refuses_damage(tmp_path, capsys):
    from genlab.cli import main

    assert main(["prepare", "digits", "--out", str(tmp_path / "d")]) == 0
    assert main(["train", "vae", "--data", f"prepared:{tmp_path / 'd'}", "--epochs", "1", "--limit", "256",
                 "--set", "model.hidden=(16,)", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    with open(tmp_path / "d" / "train.u8", "r+b") as f:
        f.truncate(100)
    assert main(["train", "vae", "--data", f"prepared:{tmp_path / 'd'}", "--out", str(tmp_path / "r2"), "--quiet"]) == 2
    assert "missing or damaged" in capsys.readouterr().err
    (tmp_path / "d" / "index.json").write_text("{not json")
    assert main(["train", "vae", "--data", f"prepared:{tmp_path / 'd'}", "--out", str(tmp_path / "r3"), "--quiet"]) == 2
    assert "not an index" in capsys.readouterr().err
    (tmp_path / "bad" / "train").mkdir(parents=True)
    (tmp_path / "bad" / "train" / "x.png").write_bytes(b"not a png")
    assert main(["prepare", f"folder:{tmp_path / 'bad'}", "--out", str(tmp_path / "p2")]) == 2
    assert "cannot open image" in capsys.readouterr().err and not (tmp_path / "p2").exists()


# ---------------------------------------------------------------- hf:PATH
def test_hugging_face_dataset_on_disk(tmp_path, capsys):
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    from genlab.cli import main
    from genlab.data import load

    rng = np.random.default_rng(0)
    arrays = rng.integers(0, 256, (12, 8, 8), dtype=np.uint8)
    feats = datasets.Features({"img": datasets.Image(), "digit": datasets.ClassLabel(names=list("abc"))})
    ds = datasets.Dataset.from_dict({"img": [Image.fromarray(a) for a in arrays], "digit": [i % 3 for i in range(12)]},
                                    features=feats)
    datasets.DatasetDict({"train": ds.select(range(9)), "validation": ds.select(range(9, 12))}).save_to_disk(
        str(tmp_path / "hf"))
    s = load(f"hf:{tmp_path / 'hf'}")
    assert s.train.images.shape == (9, 1, 8, 8) and np.array_equal(s.train.images[:, 0].numpy(), arrays[:9])
    assert s.train.labels.tolist() == [0, 1, 2] * 3 and s.train.classes == ["a", "b", "c"] and len(s.test) == 3
    assert main(["train", "vae", "--data", f"hf:{tmp_path / 'hf'}", "--epochs", "1", "--set", "model.hidden=(8,)",
                 "--out", str(tmp_path / "run"), "--quiet"]) == 0
    (tmp_path / "plain").mkdir()
    assert main(["train", "vae", "--data", f"hf:{tmp_path / 'plain'}", "--out", str(tmp_path / "r2"), "--quiet"]) == 2
    assert "save_to_disk" in capsys.readouterr().err
    # decoded a slice at a time into a prepared set: the same images and labels
    assert main(["prepare", f"hf:{tmp_path / 'hf'}", "--out", str(tmp_path / "prep")]) == 0
    p = load(f"prepared:{tmp_path / 'prep'}")
    assert torch.equal(p.train.images, s.train.images) and torch.equal(p.test.labels, s.test.labels)
    assert p.train.classes == ["a", "b", "c"]


def test_the_loader_reads_a_prepared_set_without_mapping_it(tmp_path):
    """Training batches of a prepared set come from positional reads of its file (equal to the mapped images),
    a transform that copies the images into memory drops the reader, and batches then index the copy."""
    from genlab.cli import main
    from genlab.data import Batches, DataConfig, Pipeline, load, prepare

    assert main(["prepare", "digits", "--out", str(tmp_path / "d")]) == 0
    train = load(f"prepared:{tmp_path / 'd'}").train
    assert train.reader is not None and train.subset(100).reader is train.reader
    idx = torch.tensor([5, 0, 1496, 5, 77])
    assert torch.equal(train.take(idx), train.images[idx])
    assert torch.equal(train.take(idx), load("digits").train.images[idx])
    calls = []
    mapped = prepare(train, DataConfig())
    assert mapped.images is train.images and mapped.reader is train.reader  # no transform: still the file
    mapped.reader = lambda i: (calls.append(len(i)), train.reader(i))[1]
    loader = Batches(mapped, Pipeline(DataConfig()), 8)
    assert sum(len(x) for x, _ in loader.epoch(0)) == len(calls) * 8 == 1496
    padded = prepare(train, DataConfig(pad=2))
    assert padded.reader is None and padded.take(idx).shape == (5, 1, 12, 12)  # in memory: indexed as usual
