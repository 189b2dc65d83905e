"""IDX reader, bundled MNIST, the standard split and user IDX directories."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from evsnn.errors import FormatError
from evsnn.io.datasets import Split, load_bundled_mnist, load_idx, load_idx_dir, mnist_split

_CODES = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}


def idx_bytes(arr: np.ndarray) -> bytes:
    """Encode ``arr`` as IDX (big-endian header and data)."""
    arr = np.asarray(arr)
    code = _CODES[arr.dtype.str[1:]]
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write_idx(path, arr: np.ndarray, *, gz: bool = False):
    data = idx_bytes(arr)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


# --- load_idx -------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", ["u1", "i1", "<i2", "<i4", "<f4", "<f8"])
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 4), (2, 1, 3, 2)])
def test_round_trip(tmp_path, gz, dtype, shape):
    rng = np.random.default_rng(0)
    arr = (rng.standard_normal(shape) * 100).astype(dtype)
    out = load_idx(write_idx(tmp_path / "a.idx", arr, gz=gz))
    assert out.dtype == arr.dtype and out.dtype.isnative
    assert out.shape == shape
    np.testing.assert_array_equal(out, arr)
    out[...] = 0  # writable, not a view of immutable bytes


def test_gzip_detected_by_magic_not_name(tmp_path):
    arr = np.arange(6, dtype=np.uint8).reshape(2, 3)
    np.testing.assert_array_equal(load_idx(write_idx(tmp_path / "raw.gz", arr)), arr)
    np.testing.assert_array_equal(load_idx(write_idx(tmp_path / "plain", arr, gz=True)), arr)


def test_empty_dimension(tmp_path):
    arr = np.zeros((0, 4), dtype=np.int32)
    assert load_idx(write_idx(tmp_path / "e.idx", arr)).shape == (0, 4)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_idx(tmp_path / "nope")


_GOOD = idx_bytes(np.arange(12, dtype=np.int16).reshape(3, 4))


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", r"header must be at least 4 bytes, got 0"),
        (b"\x00\x00", r"header must be at least 4 bytes, got 2"),
        (b"\x01\x00" + _GOOD[2:], r"magic number must start with two zero bytes, got b'\\x01"),
        (b"\x00\x00\x0a\x01" + _GOOD[4:], r"type code must be one of 0x08, .*, got 0x0A"),
        (b"\x00\x00\x08\x00", r"number of dimensions must be >= 1, got 0"),
        (b"\x00\x00\x08\x03" + struct.pack(">I", 5), r"must be 16 bytes for 3 dimensions, got 8"),
        (_GOOD[:-1], r"payload must be 24 bytes for shape \(3, 4\) of int16, got 23.*truncated"),
        (_GOOD + b"\x00", r"payload must be 24 bytes .* got 25.*trailing bytes"),
    ],
    ids=["empty", "short-header", "magic", "type-code", "ndim-0", "dims-short", "truncated",
         "trailing"],
)
@pytest.mark.parametrize("gz", [False, True])
def test_corrupt_idx(tmp_path, data, match, gz):
    path = tmp_path / "bad.idx"
    path.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(FormatError, match=match) as info:
        load_idx(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, OSError)


def test_double_gzip_reports_magic(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.compress(_GOOD)))
    with pytest.raises(FormatError, match=r"two zero bytes, got b'\\x1f\\x8b"):
        load_idx(path)


@pytest.mark.parametrize(
    "mangle",
    [lambda z: z[:-10], lambda z: z[:12], lambda z: z[:-8] + b"\xde\xad\xbe\xef" + z[-4:],
     lambda z: z[:10] + b"\xff" * 8 + z[18:]],
    ids=["truncated", "header-only", "bad-crc", "bad-deflate"],
)
def test_corrupt_gzip(tmp_path, mangle):
    path = tmp_path / "bad.gz"
    path.write_bytes(mangle(gzip.compress(_GOOD * 20)))
    with pytest.raises(FormatError, match=r"bad\.gz: gzip stream must be complete and valid, got"):
        load_idx(path)


# --- bundled MNIST and the standard split ------------------------------------------


@pytest.fixture(scope="module")
def mnist():
    return load_bundled_mnist()


def test_bundled_mnist(mnist):
    images, labels = mnist
    assert images.shape == (10_000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10_000,) and labels.dtype == np.uint8
    assert labels.min() == 0 and labels.max() == 9
    np.testing.assert_array_equal(labels[:10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9])
    counts = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    np.testing.assert_array_equal(np.bincount(labels, minlength=10), counts)


def test_mnist_split(mnist):
    images, labels = mnist
    s = mnist_split()
    assert isinstance(s, Split)
    assert s.x_train.shape == (8000, 1, 28, 28) and s.x_test.shape == (2000, 1, 28, 28)
    assert s.y_train.shape == (8000,) and s.y_test.shape == (2000,)
    assert s.x_train.dtype == s.x_test.dtype == np.float32
    assert s.y_train.dtype == s.y_test.dtype == np.int64
    for x in (s.x_train, s.x_test):
        assert x.min() == 0.0 and x.max() == 1.0
    # first 8000 / last 2000, in order, no overlap
    np.testing.assert_array_equal(np.rint(s.x_train[:, 0] * 255), images[:8000])
    np.testing.assert_array_equal(np.rint(s.x_test[:, 0] * 255), images[8000:])
    np.testing.assert_array_equal(np.concatenate([s.y_train, s.y_test]), labels)
    assert s.y_train[0] == 7


def test_mnist_split_options():
    s = mnist_split(n_train=9000, dtype=np.float64)
    assert len(s.x_train) == 9000 and len(s.x_test) == 1000
    assert s.x_train.dtype == np.float64


@pytest.mark.parametrize("n", [0, -1, 10_000, 20_000])
def test_mnist_split_bad_n_train(n):
    with pytest.raises(ValueError, match=rf"n_train must be in 1\.\.9999 .*got {n}"):
        mnist_split(n_train=n)


@pytest.mark.parametrize("n", [8000.0, True, "8000"])
def test_mnist_split_n_train_type(n):
    with pytest.raises(ValueError, match="n_train must be an int"):
        mnist_split(n_train=n)


def test_mnist_split_bad_dtype():
    with pytest.raises(ValueError, match="dtype must be a floating dtype, got uint8"):
        mnist_split(dtype=np.uint8)


# --- user IDX directories ----------------------------------------------------------


def fake_dir(tmp_path, n_train=6, n_test=3, size=(4, 5), skip=()):
    rng = np.random.default_rng(1)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, *size), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, *size), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for i, (name, arr) in enumerate(arrays.items()):
        if name not in skip:
            gz = i % 2 == 0
            write_idx(tmp_path / (name + ".gz" if gz else name), arr, gz=gz)
    return arrays


def test_load_idx_dir(tmp_path):
    arrays = fake_dir(tmp_path)
    s = load_idx_dir(tmp_path)
    assert isinstance(s, Split)
    assert s.x_train.shape == (6, 1, 4, 5) and s.x_test.shape == (3, 1, 4, 5)
    assert s.x_train.dtype == np.float32 and s.y_train.dtype == np.int64
    np.testing.assert_allclose(s.x_train[:, 0], arrays["train-images-idx3-ubyte"] / 255, rtol=1e-6)
    np.testing.assert_array_equal(s.y_test, arrays["t10k-labels-idx1-ubyte"])
    assert load_idx_dir(str(tmp_path), dtype=np.float64).x_test.dtype == np.float64


def test_load_idx_dir_missing_files(tmp_path):
    fake_dir(tmp_path, skip=("train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"))
    with pytest.raises(FileNotFoundError) as info:
        load_idx_dir(tmp_path)
    msg = str(info.value)
    assert str(tmp_path) in msg
    assert "got train-labels-idx1-ubyte, t10k-images-idx3-ubyte missing" in msg
    assert "Accepted names: train-images-idx3-ubyte, train-labels-idx1-ubyte, " in msg
    assert "'.gz'" in msg


def test_load_idx_dir_no_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="must be an existing directory"):
        load_idx_dir(tmp_path / "nope")


def test_load_idx_dir_count_mismatch(tmp_path):
    fake_dir(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(4, dtype=np.uint8))
    with pytest.raises(FormatError, match=r"\(t10k\): number of labels must equal .*\(3\), got 4"):
        load_idx_dir(tmp_path)


def test_load_idx_dir_wrong_kind(tmp_path):
    fake_dir(tmp_path)
    (tmp_path / "train-images-idx3-ubyte.gz").unlink()
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((6, 20), dtype=np.uint8))
    with pytest.raises(FormatError, match=r"\(train\): images must be a 3-D uint8 .*got 2-D uint8"):
        load_idx_dir(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((6, 4, 5), dtype=np.float32))
    with pytest.raises(FormatError, match=r"got 3-D float32"):
        load_idx_dir(tmp_path)


def test_load_idx_dir_size_mismatch(tmp_path):
    fake_dir(tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((3, 5, 5), dtype=np.uint8))
    with pytest.raises(FormatError, match=r"t10k image size must equal train image size \(4, 5\)"):
        load_idx_dir(tmp_path)
