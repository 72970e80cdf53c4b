"""Data files that would make us read, inflate or allocate without bound: refused with one line."""
from __future__ import annotations

import gzip
import io
import os
import struct
import zipfile
import zlib

import numpy as np
import pytest

from core import data
from tests.conftest import idx_bytes
from tests.test_record_faults import fill, small_disk


def npy_header(shape, dtype="|u1") -> bytes:
    header = repr({"descr": dtype, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header


def test_an_npy_header_asking_for_a_tebibyte_is_refused_before_allocating(tmp_path):
    path = tmp_path / "mnist.npz"
    with zipfile.ZipFile(path, "w") as z:  # a small stored member whose header says (2**20, 2**20) uint8
        z.writestr("x_train.npy", npy_header((1 << 20, 1 << 20)) + b"\0" * 100)
    with pytest.raises(data.DataError, match="asks for 1,099,511,627,776 bytes"):
        data.read_npz(path)


def test_a_zip_bomb_member_is_refused_before_inflating(tmp_path):
    path = tmp_path / "mnist.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:  # 300 MB of zeros in ~300 KB
        with z.open("x_train.npy", "w", force_zip64=True) as member:
            member.write(npy_header((300 * 1024 * 1024,)))
            block = b"\0" * (1 << 20)
            for _ in range(300):
                member.write(block)
    assert path.stat().st_size < 2_000_000
    with pytest.raises(data.DataError, match="inflates to 314,572,"):
        data.read_npz(path)


def test_a_gzip_bomb_idx_file_is_refused_at_the_bound(tmp_path):
    folder = tmp_path / "idx"
    folder.mkdir()
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 255, (60000, 28, 28), np.uint8), "y_train": np.zeros(60000, np.uint8),
              "x_test": np.zeros((10000, 28, 28), np.uint8), "y_test": np.zeros(10000, np.uint8)}
    for name, stems in data.IDX_NAMES.items():
        (folder / f"{stems[0]}.gz").write_bytes(gzip.compress(idx_bytes(arrays[name]), 1))
    bomb = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    payload = bomb.compress(b"\0" * (200 << 20)) + bomb.flush()  # 200 MB of zeros, ~200 KB
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(payload)
    with pytest.raises(data.DataError, match="inflates to more than 47,040,016 bytes"):
        data.read_idx(folder)


def test_an_idx_header_whose_dims_overflow_is_refused(tmp_path):
    raw = bytes([0, 0, 8, 3]) + b"".join((2**31).to_bytes(4, "big") for _ in range(3)) + b"\0" * 10
    with pytest.raises(data.DataError, match="IDX header says"):
        data.parse_idx(raw, "x")


@pytest.mark.parametrize("source", ["npz", "csv"])
def test_special_files_are_refused_not_read(tmp_path, source):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # nobody writes: a read would block for ever
    if source == "csv":
        os.mkfifo(tmp_path / "mnist_train.csv")
    path = str(fifo) if source == "npz" else str(tmp_path)
    with pytest.raises(data.DataError, match="a FIFO, not a regular file"):
        data.load_mnist(source, path)
    with pytest.raises(data.DataError, match="character device"):
        data.load_mnist("npz", "/dev/zero")


def test_idx_search_ignores_fifos_and_does_not_follow_linked_folders(tmp_path):
    folder = tmp_path / "idx"
    folder.mkdir()
    os.mkfifo(folder / "train-images-idx3-ubyte")
    (folder / "loop").symlink_to(folder)  # a folder that contains itself
    with pytest.raises(data.DataError, match="IDX files not found: train-images-idx3-ubyte"):
        data.read_idx(folder)


def test_a_cache_save_on_a_full_disk_leaves_no_part_file_and_the_run_goes_on(tmp_path, mnist, monkeypatch):
    with small_disk(tmp_path, "4m") as disk:
        cache = disk / "cache"
        with pytest.raises(OSError):
            data.save_cache(mnist, cache)
        assert os.listdir(cache) == []  # no tmp*.part keeping the disk full
        monkeypatch.setenv("MNIST_HARNESS_CACHE", str(cache))
        monkeypatch.setitem(data.FETCHERS, "local", lambda: mnist)  # a source that works offline
        messages = []
        got = data.fetch(["local"], log=messages.append)
        assert got is mnist and "verified, but not cached (No space left on device" in messages[-1]
        assert os.listdir(cache) == []
