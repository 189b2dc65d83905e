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


# --- load_samples: a user's own samples (evsnn run --data) ---------------------------------------------------
from evsnn.io.datasets import load_samples  # noqa: E402


def test_samples_from_npy_npz_and_idx(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((5, 2, 3))
    np.save(tmp_path / "x.npy", x)
    got, y = load_samples(tmp_path / "x.npy")
    assert y is None and got.dtype == np.float64
    np.testing.assert_array_equal(got, x)
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x=x.astype(np.float32), y=labels)
    got, y = load_samples(tmp_path / "d.npz")
    assert got.dtype == np.float32 and y.dtype == np.int64 and y.tolist() == [3, 1, 4, 1, 5]
    np.savez(tmp_path / "ints.npz", x=np.arange(6).reshape(2, 3))  # integer samples become float32, unscaled
    got, y = load_samples(tmp_path / "ints.npz")
    assert y is None and got.dtype == np.float32 and got.tolist() == [[0, 1, 2], [3, 4, 5]]
    # IDX images: (N, H, W) uint8 -> (N, 1, H, W) in [0, 1], exactly as the bundled MNIST is read
    images = (rng.random((4, 3, 5)) * 255).astype(np.uint8)
    write_idx(tmp_path / "img-idx3-ubyte", images, gz=True)
    write_idx(tmp_path / "lab-idx1-ubyte", labels[:4])
    got, y = load_samples(tmp_path / "img-idx3-ubyte", labels=tmp_path / "lab-idx1-ubyte")
    assert got.shape == (4, 1, 3, 5) and got.dtype == np.float32 and y.tolist() == [3, 1, 4, 1]
    np.testing.assert_array_equal(got[:, 0] * 255, images.astype(np.float32))
    np.save(tmp_path / "y.npy", labels[:4].astype(np.int32))
    assert load_samples(tmp_path / "img-idx3-ubyte", labels=tmp_path / "y.npy")[1].tolist() == [3, 1, 4, 1]


def test_bundled_mnist_read_through_load_samples_is_the_split(tmp_path):
    images, labels = load_bundled_mnist()
    write_idx(tmp_path / "t10k-images", images[8000:8010])
    write_idx(tmp_path / "t10k-labels", labels[8000:8010])
    x, y = load_samples(tmp_path / "t10k-images", labels=tmp_path / "t10k-labels")
    split = mnist_split()
    np.testing.assert_array_equal(x, split.x_test[:10])
    np.testing.assert_array_equal(y, split.y_test[:10])


@pytest.mark.parametrize(("name", "make", "match"), [
    ("e.npy", lambda p: p.write_bytes(b""), r"e\.npy: samples must be a numpy \.npy file .* empty or truncated"),
    ("t.npy", lambda p: p.write_text("hello"), r"pickled Python objects, which are not read"),
    ("o.npy", lambda p: np.save(p, np.array([{"a": 1}], dtype=object)), r"pickled Python objects"),
    ("z.npz", lambda p: p.write_bytes(b"PK\x03\x04 not a zip"), r"z\.npz: samples must be a numpy \.npz file"),
    ("n.npz", lambda p: np.savez(p, images=np.zeros((2, 3))), r"must hold an array 'x' .* got members \['images'\]"),
    ("k.npz", lambda p: np.savez(p, x=np.zeros((2, 3)), labels=np.zeros(2, int)),
     r"got members \['labels', 'x'\]"),  # a misspelt 'y' must not silently mean "no labels"
    ("s.npy", lambda p: np.save(p, np.array(["a", "b"])), r"samples must be a numeric array .* got 1-D <U1"),
    ("c.npy", lambda p: np.save(p, np.zeros(3, complex)), r"must be a numeric array"),
    ("y2.npz", lambda p: np.savez(p, x=np.zeros((2, 3)), y=np.zeros((2, 1), int)), r"labels must be a 1-D integer"),
    ("yf.npz", lambda p: np.savez(p, x=np.zeros((2, 3)), y=np.zeros(2)), r"labels must be a 1-D integer .* float64"),
    ("yn.npz", lambda p: np.savez(p, x=np.zeros((2, 3)), y=np.zeros(3, int)),
     r"number of labels must equal number of samples \(2\), got 3"),
    ("yneg.npz", lambda p: np.savez(p, x=np.zeros((2, 3)), y=np.array([0, -1])), r"labels must be >= 0, got -1"),
    ("bad-idx", lambda p: p.write_bytes(b"\x01\x02\x03\x04"), r"IDX magic number"),
])
def test_bad_sample_files(tmp_path, name, make, match):
    make(tmp_path / name)
    with pytest.raises(FormatError, match=match):
        load_samples(tmp_path / name)


def test_labels_file_checks(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 3)), y=np.array([0, 1]))
    np.save(tmp_path / "x.npy", np.zeros((2, 3)))
    np.save(tmp_path / "y.npy", np.array([0, 1]))
    np.savez(tmp_path / "y.npz", y=np.array([0, 1]))
    with pytest.raises(FormatError, match=r"holds labels 'y', so no separate labels file"):
        load_samples(tmp_path / "d.npz", labels=tmp_path / "y.npy")
    with pytest.raises(FormatError, match=r"labels must be a \.npy or IDX file, got an \.npz"):
        load_samples(tmp_path / "x.npy", labels=tmp_path / "y.npz")
    np.save(tmp_path / "y3.npy", np.array([0, 1, 2]))
    with pytest.raises(FormatError, match=r"y3\.npy: number of labels must equal number of samples \(2\), got 3"):
        load_samples(tmp_path / "x.npy", labels=tmp_path / "y3.npy")
    with pytest.raises(FileNotFoundError):
        load_samples(tmp_path / "missing.npy")
