"""Readers for user-supplied image data: `idx:DIR`, `cifar:DIR`, `folder:DIR`, `npz:FILE`.

Each reader turns files in a well-known format into `Splits` of uint8 images N x C x H x W with int64
labels (or None). Every mistake in the user's files is reported as a `UserError` naming the file; no
reader lets a raw numpy, PIL, struct or zlib exception through. Nothing is ever unpickled except CIFAR
batches, and those only through `_CifarUnpickler`, which can build numpy arrays and nothing else.
"""
from __future__ import annotations

import codecs
import io
import math
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import UserError, machine_memory
from .base import ImageSet, Splits
from .registry import user


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read '{path}': {e.strerror or e}") from None


MAX_CLASSES = 2**16  # a label is a class index: one of 10^12 is a mistake, and would size every class table


def _labels(values, n: int, what: str, num_classes: int | None = None) -> torch.Tensor:
    """Check labels (a sequence or an N or N x 1 array of non-negative integers) and return them as int64."""
    y = np.asarray(values)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or not (np.issubdtype(y.dtype, np.integer) or y.size == 0):
        raise UserError(f"{what}: labels must be a flat list of integers, got {y.dtype} of shape {y.shape}")
    if len(y) != n:
        raise UserError(f"{what}: found {len(y)} labels for {n} images; the counts must match")
    if n and y.min() < 0:
        raise UserError(f"{what}: labels must be >= 0, found {y.min()}")
    if n and y.max() >= MAX_CLASSES:
        raise UserError(f"{what}: labels are class indices 0..K-1, and label {y.max()} implies {int(y.max()) + 1:,} "
                        f"classes (genlab takes at most {MAX_CLASSES:,}); renumber the labels")
    if n and num_classes is not None and y.max() >= num_classes:
        raise UserError(f"{what}: label {y.max()} is out of range for the {num_classes} class names given")
    return torch.from_numpy(y.astype(np.int64))


# ---------------------------------------------------------------------------------------------- idx

_IDX_TYPES = {0x08: "uint8", 0x09: "int8", 0x0B: "int16", 0x0C: "int32", 0x0D: "float32", 0x0E: "float64"}


def _gunzip(data: bytes, path: Path, limit: int | None = None) -> bytes:
    """Decompress a gzip file in bounded pieces, refusing one that inflates past `limit` bytes (a quarter of the
    machine's memory by default) before it is all in memory."""
    limit = machine_memory() // 4 if limit is None else limit
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)  # 16: expect the gzip header and trailer
    pieces, size, rest = [], 0, data
    try:
        while rest and not inflate.eof:
            piece = inflate.decompress(rest, 1 << 24)
            size += len(piece)
            if size > limit:
                raise UserError(f"'{path}' inflates to more than {limit / 2**30:.1f} GiB (it is {len(data):,} bytes "
                                "compressed): not a dataset this machine can hold; is it the right file?")
            pieces.append(piece)
            rest = inflate.unconsumed_tail
        if not inflate.eof:
            raise UserError(f"'{path}' is not a valid gzip file (it ends early); download it again or unzip it by hand")
    except zlib.error as e:
        raise UserError(f"'{path}' is not a valid gzip file ({e}); download it again or unzip it by hand") from None
    return b"".join(pieces)


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """One IDX file, optionally gzipped (name ending in .gz).

    Layout: two zero bytes, a dtype code (only 0x08 = uint8 is accepted), the number of dimensions d,
    then d big-endian int32 sizes, then the values in C order. Images have d = 3 (N x H x W), labels d = 1.
    """
    data = _read_bytes(path)
    if path.suffix == ".gz":
        data = _gunzip(data, path)
    if len(data) < 4 or data[:2] != b"\0\0":
        raise UserError(f"'{path}' is not an IDX file: bad magic number {data[:4].hex() or '(empty file)'}")
    code, dims = data[2], data[3]
    if code != 0x08:
        kind = _IDX_TYPES.get(code, f"unknown type 0x{code:02x}")
        raise UserError(f"'{path}' holds {kind} values; only uint8 IDX files (type 0x08) are supported")
    if dims != ndim:
        what = "images (N x H x W)" if ndim == 3 else "labels (N)"
        raise UserError(f"'{path}' has {dims} dimensions but IDX {what} need {ndim}; is it the right file?")
    header = 4 + 4 * dims
    if len(data) < header:
        raise UserError(f"'{path}' is truncated: it ends inside its header")
    shape = struct.unpack(f">{dims}i", data[4:header])
    if min(shape) <= 0:
        raise UserError(f"'{path}' is corrupt: its header gives the sizes {' x '.join(map(str, shape))}, "
                        "and every size must be positive")
    need = math.prod(shape)
    if len(data) - header != need:
        raise UserError(
            f"'{path}' is truncated or corrupt: its header says {'x'.join(map(str, shape))} = {need} values "
            f"but it holds {len(data) - header} bytes of data; download it again"
        )
    return np.frombuffer(data, np.uint8, need, header).reshape(shape).copy()


def _find_one(folder: Path, patterns: tuple[str, ...]) -> Path | None:
    """The one file in `folder` matching any glob pattern; a plain file wins over its own `.gz`."""
    found = sorted({p for pat in patterns for p in folder.glob(pat) if p.is_file()})
    names = {p.name for p in found}
    found = [p for p in found if not (p.suffix == ".gz" and p.name[:-3] in names)]
    if len(found) > 1:
        raise UserError(
            f"several files in '{folder}' match {' or '.join(patterns)}: "
            f"{', '.join(p.name for p in found)}; keep only one"
        )
    return found[0] if found else None


def _idx_split(images: Path, labels: Path | None) -> ImageSet:
    x = torch.from_numpy(_read_idx(images, 3)).unsqueeze(1)
    y = None
    if labels is not None:
        y = _labels(_read_idx(labels, 1), len(x), f"'{labels}' (labels of {images.name})")
    return ImageSet(x, y)


@user("idx", "MNIST-style IDX files (train-images-idx3-ubyte[.gz], ...) in a folder, or one images file")
def idx(path: Path) -> Splits:
    """MNIST / Fashion-MNIST / KMNIST IDX files.

    `path` is either a single IDX images file (read as unlabelled train images) or a folder holding
    `train*images*` (required), `train*labels*`, `t10k*images*` or `test*images*`, and `t10k*labels*` or
    `test*labels*`, each plain or gzipped, e.g. `train-images-idx3-ubyte.gz` or `train-images.idx3-ubyte`.
    """
    if path.is_file():
        return Splits(_idx_split(path, None), None, f"idx:{path}")
    train_images = _find_one(path, ("train*images*",))
    if train_images is None:
        raise UserError(f"no train images file (named like train-images-idx3-ubyte[.gz]) in '{path}'")
    train = _idx_split(train_images, _find_one(path, ("train*labels*",)))
    test_images = _find_one(path, ("t10k*images*", "test*images*"))
    test = None
    if test_images is not None:
        test = _idx_split(test_images, _find_one(path, ("t10k*labels*", "test*labels*")))
    return Splits(train, test, f"idx:{path}")


# -------------------------------------------------------------------------------------------- cifar


# numpy's array-rebuilding function, which a pickled ndarray names (its module differs across numpy versions)
_RECONSTRUCT = np.empty(0).__reduce__()[0]


class _CifarUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays, dicts, lists, strings and numbers, and nothing else.

    Any other global a pickle names (a function to call, a class to build) is refused before it is
    looked up, so a hostile file cannot run code.
    """

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
        ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,
    }

    def __init__(self, file, path: Path):
        super().__init__(file, encoding="bytes")
        self.path = path

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise UserError(
                f"'{self.path}' is not a CIFAR batch: it asks to load {module}.{name}, so it will not be loaded"
            )
        return self.ALLOWED[(module, name)]


def _unpickle(path: Path) -> dict:
    """A CIFAR python file as a dict with str keys (the files use bytes keys from Python 2)."""
    data = _read_bytes(path)
    try:
        obj = _CifarUnpickler(io.BytesIO(data), path).load()
    except UserError:
        raise
    except Exception as e:  # any failure to parse the user's file is a corrupt file, whatever its type
        raise UserError(f"'{path}' is not a CIFAR batch: it cannot be read as a pickle ({e})") from None
    if not isinstance(obj, dict):
        raise UserError(f"'{path}' is not a CIFAR batch: it holds a {type(obj).__name__}, not a dict")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _cifar_batch(path: Path, label_key: str, num_classes: int | None) -> tuple[np.ndarray, torch.Tensor]:
    """One batch: `data` N x 3072 uint8 (1024 R, then 1024 G, then 1024 B values of a 32x32 image, row by row)."""
    batch = _unpickle(path)
    for key in ("data", label_key):
        if key not in batch:
            raise UserError(f"'{path}' is not a CIFAR batch: it has no '{key}' entry (found: {', '.join(batch)})")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise UserError(f"'{path}': 'data' must be a uint8 array of N x 3072 (3 x 32 x 32) values, got {got}")
    return data.reshape(-1, 3, 32, 32), _labels(batch[label_key], len(data), f"'{path}'", num_classes)


def _cifar_classes(path: Path, key: str) -> list[str] | None:
    if not path.is_file():
        return None
    names = _unpickle(path).get(key)
    if not isinstance(names, list) or not all(isinstance(n, (bytes, str)) for n in names):
        raise UserError(f"'{path}' has no list of class names under '{key}'")
    return [n.decode("utf-8") if isinstance(n, bytes) else n for n in names]


def _cifar_set(files: list[Path], label_key: str, classes: list[str] | None) -> ImageSet:
    parts = [_cifar_batch(f, label_key, len(classes) if classes else None) for f in files]
    x = torch.from_numpy(np.concatenate([p[0] for p in parts]))
    return ImageSet(x, torch.cat([p[1] for p in parts]), classes)


def _cifar_root(path: Path) -> Path:
    """The folder holding the batches: `path` itself or its one cifar-10-batches-py / cifar-100-python child."""
    if any(path.glob("data_batch_*")) or (path / "train").is_file():
        return path
    inner = [path / n for n in ("cifar-10-batches-py", "cifar-100-python") if (path / n).is_dir()]
    if len(inner) == 1:
        return inner[0]
    if inner:
        raise UserError(f"'{path}' holds both CIFAR-10 and CIFAR-100; point cifar: at one of its subfolders")
    raise UserError(
        f"no CIFAR batch files in '{path}': expected data_batch_1..5 and test_batch (CIFAR-10), train and "
        "test (CIFAR-100), or a cifar-10-batches-py / cifar-100-python folder; use the 'python version' download"
    )


@user("cifar", "CIFAR-10 / CIFAR-100 'python version' batches (cifar-10-batches-py, cifar-100-python)")
def cifar(path: Path) -> Splits:
    """CIFAR-10 (`data_batch_1`..`data_batch_5`, `test_batch`, `batches.meta`) or CIFAR-100 (`train`,
    `test`, `meta`; fine labels). Images are 3 x 32 x 32; class names come from the meta file when present.
    """
    if not path.is_dir():
        raise UserError(f"cifar: needs a folder, but '{path}' is a file; give the folder holding the batches")
    root = _cifar_root(path)
    if (root / "train").is_file():
        label_key, train_files, test_file = "fine_labels", [root / "train"], root / "test"
        classes = _cifar_classes(root / "meta", "fine_label_names")
    else:
        label_key, test_file = "labels", root / "test_batch"
        train_files = sorted(p for p in root.glob("data_batch_*") if p.is_file())
        classes = _cifar_classes(root / "batches.meta", "label_names")
    train = _cifar_set(train_files, label_key, classes)
    test = _cifar_set([test_file], label_key, classes) if test_file.is_file() else None
    return Splits(train, test, f"cifar:{path}")


# ------------------------------------------------------------------------------------------- folder

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
_GRAY_MODES = ("1", "L", "LA")


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _image_files(folder: Path) -> list[Path]:
    return [p for p in _visible(folder) if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]


def _list_split(folder: Path) -> tuple[list[Path], list[str] | None, list[str]]:
    """(files, class name of each file or None, sorted class names) for one split folder.

    Images lie either directly in `folder` (unlabelled) or in one subfolder per class (labelled).
    """
    direct = _image_files(folder)
    classes = [d.name for d in _visible(folder) if d.is_dir() and _image_files(d)]
    if direct and classes:
        raise UserError(
            f"'{folder}' mixes images ({direct[0].name}) with class subfolders ({classes[0]}/); "
            "put every image in a class subfolder, or none"
        )
    if direct:
        return direct, None, []
    if not classes:
        others = [p.name for p in _visible(folder) if p.is_file()]
        if others:
            raise UserError(
                f"'{folder}' holds no images, only other files (e.g. {others[0]}); "
                f"image files must end in {', '.join(IMAGE_EXTENSIONS)}"
            )
        raise UserError(f"'{folder}' holds no images, neither directly nor in class subfolders")
    files = [(f, c) for c in classes for f in _image_files(folder / c)]
    return [f for f, _ in files], [c for _, c in files], classes


def _open_image(path: Path) -> np.ndarray:
    """Pixels as H x W (grey) or H x W x 3 (colour) uint8; alpha is dropped."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I", "F") or im.mode.startswith("I;16"):
                raise UserError(f"'{path}' has {im.mode} pixels; only 8-bit images are supported, convert it first")
            return np.asarray(im.convert("L" if im.mode in _GRAY_MODES else "RGB"))
    except UserError:
        raise
    except Exception as e:  # PIL's decoders raise many types on a damaged file
        raise UserError(f"cannot open image '{path}': {e}") from None


def _load_images(files: list[Path]) -> list[np.ndarray]:
    """All images, checked to share one size; grey images are widened to RGB if any image has colour."""
    pixels = [_open_image(f) for f in files]
    for f, p in zip(files, pixels):
        if p.shape[:2] != pixels[0].shape[:2]:
            (h0, w0), (h, w) = pixels[0].shape[:2], p.shape[:2]
            raise UserError(
                f"images differ in size: '{files[0]}' is {w0}x{h0} but '{f}' is {w}x{h} (width x height); "
                "resize them to one size first"
            )
    if any(p.ndim == 3 for p in pixels):
        pixels = [p if p.ndim == 3 else np.repeat(p[:, :, None], 3, axis=2) for p in pixels]
    return pixels


def _image_set(pixels: list[np.ndarray], names: list[str] | None, classes: list[str]) -> ImageSet:
    x = np.stack(pixels)
    x = torch.from_numpy(np.ascontiguousarray(x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)))
    if names is None:
        return ImageSet(x)
    index = {c: i for i, c in enumerate(classes)}
    return ImageSet(x, torch.tensor([index[n] for n in names], dtype=torch.int64), classes)


@user("folder", "a folder of PNG/JPEG/... images, optionally in class subfolders and train/ test/ splits")
def folder(path: Path) -> Splits:
    """Image files (.png .jpg .jpeg .bmp .gif .webp, any case; hidden files are skipped).

    Layouts: images directly in DIR (unlabelled); DIR/<class>/<image> (labels index the sorted class
    names); or DIR/train/ and DIR/test/, each in one of those layouts, with test classes among train's.
    All images must share one size. They load as 1 channel if every image is greyscale, else as RGB.
    """
    if not path.is_dir():
        raise UserError(f"folder: needs a folder, but '{path}' is a file")
    split_dirs = [path / "train", path / "test"]
    if not all(d.is_dir() for d in split_dirs):
        split_dirs = [path]
    listed = [_list_split(d) for d in split_dirs]
    classes = listed[0][2]
    for d, (_, names, split_classes) in zip(split_dirs[1:], listed[1:]):
        if (names is None) != (listed[0][1] is None):
            raise UserError(f"'{split_dirs[0]}' and '{d}' must both use class subfolders, or neither")
        extra = sorted(set(split_classes) - set(classes))
        if extra:
            raise UserError(f"'{d}' has class folders not in '{split_dirs[0]}': {', '.join(extra)}")
    pixels = _load_images([f for files, _, _ in listed for f in files])
    sets, start = [], 0
    for files, names, _ in listed:
        sets.append(_image_set(pixels[start : start + len(files)], names, classes))
        start += len(files)
    return Splits(sets[0], sets[1] if len(sets) > 1 else None, f"folder:{path}")


# ---------------------------------------------------------------------------------------------- pairs
def _split_dirs(path: Path) -> list[Path]:
    """DIR/train and DIR/test (or DIR/val) when present, else DIR alone."""
    test = next((path / n for n in ("test", "val") if (path / n).is_dir()), None)
    return [path / "train", test] if (path / "train").is_dir() and test is not None else [path]


def _pair_set(a: list[np.ndarray], b: list[np.ndarray]) -> ImageSet:
    """Inputs and targets stacked on the channels (both grey, or both RGB): N x 2C x H x W."""
    if any(p.ndim == 3 for p in a + b):
        a, b = ([p if p.ndim == 3 else np.repeat(p[:, :, None], 3, axis=2) for p in side] for side in (a, b))
    x = _image_set([np.concatenate([p, q], axis=-1) if p.ndim == 3 else np.stack([p, q], -1)
                    for p, q in zip(a, b)], None, []).images
    return ImageSet(x, paired=True)


def _side_by_side(folder: Path) -> ImageSet:
    files = _image_files(folder)
    if not files:
        raise UserError(f"'{folder}' holds no images (pairs:DIR wants images whose left half is the input and right "
                        f"half the target)")
    pixels = _load_images(files)
    width = pixels[0].shape[1]
    if width % 2:
        raise UserError(f"'{files[0]}' is {width} px wide: a side-by-side pair needs an even width (input | target)")
    return _pair_set([p[:, : width // 2] for p in pixels], [p[:, width // 2 :] for p in pixels])


def _same_names(a_dir: Path, b_dir: Path) -> ImageSet:
    a_files, b_files = _image_files(a_dir), _image_files(b_dir)
    names_a, names_b = {f.stem for f in a_files}, {f.stem for f in b_files}
    if names_a != names_b:
        only = sorted(names_a ^ names_b)[0]
        side = a_dir if only in names_a else b_dir
        raise UserError(f"'{a_dir}' and '{b_dir}' must hold the same image names: '{only}' is only in '{side}'")
    if not a_files:
        raise UserError(f"'{a_dir}' holds no images")
    b_by_name = {f.stem: f for f in b_files}
    a_px, b_px = _load_images(a_files), _load_images([b_by_name[f.stem] for f in a_files])
    if a_px[0].shape[:2] != b_px[0].shape[:2]:
        (h, w), (h2, w2) = a_px[0].shape[:2], b_px[0].shape[:2]
        raise UserError(f"inputs in '{a_dir}' are {w}x{h} but targets in '{b_dir}' are {w2}x{h2}: a pair must "
                        f"share one size")
    return _pair_set(a_px, b_px)


@user("pairs", "paired images for pix2pix: side-by-side input|target images in a folder, or pairs:A_DIR,B_DIR")
def pairs(path: Path) -> Splits:
    """(input, target) pairs, stacked on the channels. `pairs:DIR`: images whose left half is the input and right
    half the target (the pix2pix datasets' format), in DIR or in DIR/train and DIR/test (or DIR/val).
    `pairs:A_DIR,B_DIR`: same-named images in two folders (inputs, targets), each with the same split layout."""
    parts = [Path(p).expanduser() for p in str(path).split(",")]
    if len(parts) > 2 or not all(p.is_dir() for p in parts):
        raise UserError(f"pairs: takes a folder of side-by-side images or two folders A_DIR,B_DIR, got '{path}'")
    if len(parts) == 1:
        sets = [_side_by_side(d) for d in _split_dirs(parts[0])]
    else:
        a_dirs, b_dirs = _split_dirs(parts[0]), _split_dirs(parts[1])
        if len(a_dirs) != len(b_dirs):
            raise UserError(f"'{parts[0]}' and '{parts[1]}' must both have train/ and test/ folders, or neither")
        sets = [_same_names(a, b) for a, b in zip(a_dirs, b_dirs)]
    return Splits(sets[0], sets[1] if len(sets) > 1 else None, f"pairs:{path}")


# ---------------------------------------------------------------------------------------------- hf
def _hf_columns(ds) -> tuple[str, str | None]:
    """The image column (the first of Image type, else 'image' or 'img') and the label column (the first
    ClassLabel, else 'label' or 'labels'), of a Hugging Face dataset."""
    import datasets

    feats = ds.features
    image = next((k for k, f in feats.items() if isinstance(f, datasets.Image)), None) or \
        next((k for k in ("image", "img") if k in feats), None)
    if image is None:
        raise UserError(f"the dataset has no image column (columns: {', '.join(feats)}); genlab reads a column of "
                        f"Image type, or one named image or img")
    label = next((k for k, f in feats.items() if isinstance(f, datasets.ClassLabel)), None) or \
        next((k for k in ("label", "labels") if k in feats), None)
    return image, label


def hf_chunks(ds, what: str, size: int = 1000):
    """The images of a Hugging Face split, decoded `size` at a time: uint8 arrays N x C x H x W. Grey or colour is the
    first image's, and later images are converted to it; all must share its size."""
    image, _ = _hf_columns(ds)
    grey, shape = None, None
    for i in range(0, len(ds), size):
        out = []
        for im in ds[i : i + size][image]:  # PIL images
            if grey is None:
                grey = im.mode in _GRAY_MODES if hasattr(im, "mode") else np.asarray(im).ndim == 2
            a = np.asarray(im.convert("L" if grey else "RGB") if hasattr(im, "convert") else im)
            if a.dtype != np.uint8:
                raise UserError(f"{what}: images must be 8-bit, found {a.dtype}")
            a = a[..., None] if a.ndim == 2 else a
            shape = shape or a.shape
            if a.shape != shape:
                raise UserError(f"{what}: images differ in size ({shape[1]}x{shape[0]} and {a.shape[1]}x{a.shape[0]}); "
                                f"resize them to one size first")
            out.append(a)
        if out:
            yield np.stack(out).transpose(0, 3, 1, 2)


def hf_labels(ds, what: str, n: int) -> tuple[torch.Tensor | None, list[str] | None]:
    """The split's labels (int64) and class names, or (None, None) without a label column."""
    _, label = _hf_columns(ds)
    if label is None:
        return None, None
    feat = ds.features[label]
    names = list(feat.names) if hasattr(feat, "names") else None
    return _labels(np.asarray(ds[label]), n, f"{what} [{label}]", len(names) if names else None), names


def _hf_split(ds, what: str) -> ImageSet:
    chunks = list(hf_chunks(ds, what))
    if not chunks:
        raise UserError(f"{what} holds no images")
    x = torch.from_numpy(np.ascontiguousarray(np.concatenate(chunks)))
    labels, names = hf_labels(ds, what, len(x))
    return ImageSet(x, labels, names)


def load_hf(path: Path):
    """(train, test or None) Hugging Face datasets saved at `path`."""
    try:
        import datasets
    except ImportError:
        raise UserError("hf: sources need the datasets package: pip install datasets") from None
    try:
        d = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as e:
        raise UserError(f"'{path}' is not a dataset saved with save_to_disk ({str(e).splitlines()[0]})") from None
    if isinstance(d, datasets.DatasetDict):
        train = d["train"] if "train" in d else d[next(iter(d))]
        return train, next((d[k] for k in ("test", "validation") if k in d), None)
    return d, None


@user("hf", "a Hugging Face dataset saved with save_to_disk (Arrow files): an image column, labels if present")
def hf(path: Path) -> Splits:
    """`datasets.load_from_disk(DIR)`: a DatasetDict (train, and test or validation) or one Dataset; the image
    column is the first of Image type (else 'image' or 'img'), labels the first ClassLabel (else 'label'). The
    images are decoded into memory; `genlab prepare hf:DIR` decodes them a slice at a time into files instead."""
    train, test = load_hf(path)
    return Splits(_hf_split(train, f"'{path}' train"), _hf_split(test, f"'{path}' test") if test is not None else None,
                  f"hf:{path}")


# ---------------------------------------------------------------------------------------------- npz

_NPZ_KEYS = (("x_train", "y_train", "x_test", "y_test"), ("images", "labels", None, None), ("x", "y", None, None))


def _to_images(a: np.ndarray, what: str) -> torch.Tensor:
    """N x H x W, N x C x H x W or N x H x W x C (C = 1 or 3; channels first when dim 1 is 1 or 3) as uint8.

    uint8 is taken as is, other integers must lie in 0..255, floats in [0, 1] (scaled by 255, rounded).
    """
    if a.ndim == 3:
        a = a[:, None]
    elif a.ndim == 4 and a.shape[1] not in (1, 3):
        if a.shape[3] not in (1, 3):
            raise UserError(
                f"{what}: shape {a.shape} has no channel axis of size 1 or 3 at position 1 or 3; "
                "store N x H x W x C or N x C x H x W with C = 1 (grey) or 3 (RGB)"
            )
        a = a.transpose(0, 3, 1, 2)
    elif a.ndim != 4:
        raise UserError(f"{what}: images must be N x H x W or N x H x W x C, got {a.ndim} dimensions {a.shape}")
    if len(a) == 0:
        raise UserError(f"{what}: holds no images")
    if a.dtype != np.uint8:
        a = _to_uint8(a, what)
    return torch.from_numpy(np.ascontiguousarray(a))


def _to_uint8(a: np.ndarray, what: str) -> np.ndarray:
    if np.issubdtype(a.dtype, np.floating):
        if not (np.isfinite(a).all() and a.min() >= 0 and a.max() <= 1):
            raise UserError(f"{what}: float images must lie in [0, 1], found {a.min()} .. {a.max()}")
        return np.rint(a * 255.0).astype(np.uint8)
    if np.issubdtype(a.dtype, np.integer):
        if a.min() < 0 or a.max() > 255:
            raise UserError(f"{what}: integer images must lie in 0..255, found {a.min()} .. {a.max()}")
        return a.astype(np.uint8)
    raise UserError(f"{what}: images of dtype {a.dtype} are not supported; use uint8, 0..255 integers or [0, 1] floats")


def _npz_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array in a .npz (by key) or .npy (key 'x') file, read without pickle."""
    try:
        f = open(path, "rb")
    except OSError as e:
        raise UserError(f"cannot read '{path}': {e.strerror or e}") from None
    with f:  # our own handle: np.load leaks its file when a damaged zip fails to open
        head = f.read(6)
        if not (head.startswith(b"PK") or head == b"\x93NUMPY"):
            raise UserError(
                f"'{path}' is neither a .npz nor a .npy file; save the arrays with numpy.savez or numpy.save"
            )
        f.seek(0)
        try:
            loaded = np.load(f, allow_pickle=False)
            if isinstance(loaded, np.ndarray):
                return {"x": loaded}
            with loaded:
                return {k: loaded[k] for k in loaded.files}
        except Exception as e:  # zipfile and numpy raise many types on a damaged file
            if isinstance(e, ValueError) and "allow_pickle" in str(e):
                raise UserError(
                    f"'{path}' holds object arrays, which need pickle; genlab only reads numeric arrays"
                ) from None
            raise UserError(f"'{path}' is corrupt and cannot be read: {e}") from None


@user("npz", "numpy arrays: a .npz with x_train/y_train/x_test/y_test, images/labels or x/y, or an images .npy")
def npz(path: Path) -> Splits:
    """A .npz with keys `x_train`, `y_train`, `x_test`, `y_test` (labels and test optional), or `images`
    and `labels`, or `x` and `y` (train only); or a .npy of images. See `_to_images` for accepted arrays.
    """
    if not path.is_file():
        raise UserError(f"npz: needs a .npz or .npy file, but '{path}' is a folder")
    arrays = _npz_arrays(path)
    keys = next((k for k in _NPZ_KEYS if k[0] in arrays), None)
    if keys is None:
        raise UserError(
            f"'{path}' has no images under x_train, images or x (found: {', '.join(arrays) or 'no arrays'})"
        )
    sets = []
    for x_key, y_key in (keys[:2], keys[2:]):
        if x_key is None or x_key not in arrays:
            continue
        x = _to_images(arrays[x_key], f"'{path}' [{x_key}]")
        y = None
        if y_key in arrays:
            y = _labels(arrays[y_key], len(x), f"'{path}' [{y_key}] (labels of [{x_key}])")
        sets.append(ImageSet(x, y))
    return Splits(sets[0], sets[1] if len(sets) > 1 else None, f"npz:{path}")
