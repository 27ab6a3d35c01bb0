"""IDX and CIFAR-binary parsers: spec-level equality, real files, and errors naming file+offset."""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest

from dlprep.errors import FormatError
from dlprep.formats.cifar import decode_cifar_member, parse_cifar_records, read_cifar_file
from dlprep.formats.idx import parse_idx_bytes, read_idx, read_idx_images, read_idx_labels


def idx_bytes(arr: np.ndarray, code: int) -> bytes:
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def spec_read(data: bytes) -> np.ndarray:
    """A straightforward reading of the IDX spec, independent of the parser under test."""
    code, ndim = data[2], data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    dtype = {8: ">u1", 9: ">i1", 11: ">i2", 12: ">i4", 13: ">f4", 14: ">f8"}[code]
    return np.frombuffer(data[4 + 4 * ndim:], dtype).reshape(dims)


@pytest.mark.parametrize("dtype,code", [(np.uint8, 8), (np.int8, 9), (np.int16, 11),
                                        (np.int32, 12), (np.float32, 13), (np.float64, 14)])
def test_idx_matches_spec_reading_for_every_dtype(dtype: type, code: int) -> None:
    rng = np.random.default_rng(code)
    arr = (rng.normal(size=(7, 5, 3)) * 100).astype(dtype)
    data = idx_bytes(arr, code)
    parsed = parse_idx_bytes(data)
    np.testing.assert_array_equal(parsed, spec_read(data))
    np.testing.assert_array_equal(parsed, arr)
    assert parsed.dtype.isnative


def test_real_mnist_t10k_files_parse_to_canonical_content(realdata: Path) -> None:
    img_path = realdata / "mnist" / "t10k-images-idx3-ubyte.gz"
    lab_path = realdata / "mnist" / "t10k-labels-idx1-ubyte.gz"
    raw_images = gzip.open(img_path).read()
    # PROVENANCE.md: the uncompressed bytes are the canonical MNIST ones.
    assert hashlib.md5(raw_images).hexdigest() == "2646ac647ad5339dbf082846283269ea"
    images = read_idx_images(img_path)
    labels = read_idx_labels(lab_path, n_classes=10)
    assert images.shape == (10000, 28, 28, 1) and images.dtype == np.uint8
    assert labels.shape == (10000,) and labels.dtype == np.int64
    np.testing.assert_array_equal(images[..., 0], spec_read(raw_images))
    assert np.bincount(labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    train_labels = read_idx(realdata / "mnist" / "train-labels-idx1-ubyte.gz")
    assert train_labels.shape == (60000,)


def test_truncated_idx_names_file_and_offset(tmp_path: Path) -> None:
    data = idx_bytes(np.zeros((10, 28, 28), np.uint8), 8)
    path = tmp_path / "cut-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(data[:-100]))
    with pytest.raises(FormatError) as err:
        read_idx(path)
    assert str(path) in str(err.value)
    assert err.value.offset == len(data) - 100
    assert "truncated" in str(err.value)


@pytest.mark.parametrize("data,offset,what", [
    (b"\x00\x00", 2, "truncated IDX header"),
    (b"\x01\x00\x08\x01" + b"\x00" * 8, 0, "bad IDX magic"),
    (b"\x00\x00\x07\x01" + b"\x00" * 8, 2, "unknown IDX dtype"),
    (b"\x00\x00\x08\x03\x00\x00", 6, "truncated IDX header"),
    (idx_bytes(np.zeros(4, np.uint8), 8) + b"xx", 12, "trailing bytes"),
])
def test_garbled_idx_errors(data: bytes, offset: int, what: str) -> None:
    with pytest.raises(FormatError) as err:
        parse_idx_bytes(data, "garbled.idx")
    assert err.value.offset == offset and what in str(err.value)
    assert "garbled.idx" in str(err.value)


def test_corrupt_gzip_is_a_format_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(b"\x00" * 1000)[:30])
    with pytest.raises(FormatError, match="bad.gz"):
        read_idx(path)


def test_label_out_of_range_names_offset(tmp_path: Path) -> None:
    path = tmp_path / "labels.idx"
    path.write_bytes(idx_bytes(np.array([1, 2, 12, 3], np.uint8), 8))
    with pytest.raises(FormatError) as err:
        read_idx_labels(path, n_classes=10)
    assert err.value.offset == 8 + 2


def cifar_records(labels: np.ndarray, images: np.ndarray) -> bytes:
    """Records as the CIFAR page describes them: label byte(s), then R, G, B 32x32 planes."""
    out = bytearray()
    for lab, img in zip(labels, images, strict=True):
        out += bytes(np.atleast_1d(lab).astype(np.uint8))
        for ch in range(3):
            out += img[:, :, ch].tobytes()
    return bytes(out)


def test_cifar10_records_decode_to_hwc() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    labels = np.array([0, 9, 3, 3, 1, 5])
    got_images, got_labels = parse_cifar_records(cifar_records(labels, images), 1)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels[:, 0], labels)
    # spec-level reading: reshape(3, 32, 32).transpose(1, 2, 0)
    raw = np.frombuffer(cifar_records(labels, images), np.uint8).reshape(-1, 3073)
    want = raw[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(got_images, want)


def test_cifar100_two_label_bytes() -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    labels = np.array([[19, 99], [0, 0], [7, 42]])
    got_images, got_labels = parse_cifar_records(cifar_records(labels, images), 2,
                                                 n_classes=(20, 100))
    np.testing.assert_array_equal(got_labels, labels)
    np.testing.assert_array_equal(got_images, images)


def test_truncated_cifar_names_file_and_record_offset(tmp_path: Path) -> None:
    data = cifar_records(np.array([1, 2, 3]), np.zeros((3, 32, 32, 3), np.uint8))
    path = tmp_path / "data_batch_1.bin"
    path.write_bytes(data[:-10])
    with pytest.raises(FormatError) as err:
        read_cifar_file(path, 1, (10,))
    assert str(path) in str(err.value) and err.value.offset == 2 * 3073
    assert "truncated CIFAR record 2" in str(err.value)


def test_cifar_bad_label_names_offset() -> None:
    data = cifar_records(np.array([1, 200]), np.zeros((2, 32, 32, 3), np.uint8))
    with pytest.raises(FormatError) as err:
        parse_cifar_records(data, 1, "x.bin", (10,))
    assert err.value.offset == 3073


def test_threaded_decode_with_sums_matches_plain_parse() -> None:
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (5000, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, 5000)
    data = cifar_records(labels, images)
    with ThreadPoolExecutor(2) as pool:
        got, got_labels, (total, total_sq, count) = decode_cifar_member(data, 1, "x", (10,), pool)
    np.testing.assert_array_equal(got, images)
    np.testing.assert_array_equal(got_labels[:, 0], labels)
    flat = images.reshape(-1, 3).astype(np.uint64)
    assert count == 5000 * 1024
    np.testing.assert_array_equal(total, flat.sum(0))
    np.testing.assert_array_equal(total_sq, (flat * flat).sum(0))
    with pytest.raises(FormatError, match="truncated CIFAR record 4999"):
        decode_cifar_member(data[:-1], 1, "x", (10,))
