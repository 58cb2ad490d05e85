"""Tests for nets.datasets: embedded MNIST, IDX / Keras files, the downloader, batching, transforms.

Nothing here touches the internet: downloads are served by a local http.server on 127.0.0.1.
The real 10,000-digit test set is used only when ../shared/data/mnist exists beside the repository.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import shutil
import socket
import struct
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nets.datasets import (
    MNIST_MD5,
    MNISTDownloadError,
    MNISTFormatError,
    binarize_dynamic,
    binarize_fixed,
    download_mnist,
    flatten,
    iterate_minibatches,
    load_mnist,
    one_hot,
    to_signed,
    to_unit,
)
from nets.datasets import mnist as mnist_module

SHARED_MNIST_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
OFFICIAL_TEST_LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
IDX_NAMES = {  # split prefix -> (images file, labels file), gzipped spelling
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "t10k": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


# ============================================================================ helpers

def idx_images_bytes(images: np.ndarray, magic: int = 2051) -> bytes:
    """Encode uint8 (N, rows, cols) as an IDX3 file."""
    count, rows, cols = images.shape
    return struct.pack(">4I", magic, count, rows, cols) + images.astype(np.uint8).tobytes()


def idx_labels_bytes(labels: np.ndarray, magic: int = 2049) -> bytes:
    """Encode uint8 (N,) as an IDX1 file."""
    return struct.pack(">2I", magic, len(labels)) + np.asarray(labels, dtype=np.uint8).tobytes()


def random_digits(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8),
            rng.integers(0, 10, size=count).astype(np.uint8))


def write_idx_pair(directory: Path, prefix: str, images: np.ndarray, labels: np.ndarray,
                   gz: bool = True, dot: bool = False) -> tuple[Path, Path]:
    """Write ``{prefix}-images-idx3-ubyte[.gz]`` and the labels file; return both paths."""
    directory.mkdir(parents=True, exist_ok=True)
    sep = "." if dot else "-"
    suffix = ".gz" if gz else ""
    image_path = directory / f"{prefix}-images{sep}idx3-ubyte{suffix}"
    label_path = directory / f"{prefix}-labels{sep}idx1-ubyte{suffix}"
    for path, data in ((image_path, idx_images_bytes(images)), (label_path, idx_labels_bytes(labels))):
        path.write_bytes(gzip.compress(data) if gz else data)
    return image_path, label_path


def gz_without_mtime(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


# ============================================================================ embedded digits

def test_embedded_shapes_dtypes_and_range():
    for split, count in (("train", 4500), ("test", 500)):
        images, labels = load_mnist(split)
        assert images.shape == (count, 1, 28, 28) and images.dtype == np.float32
        assert labels.shape == (count,) and labels.dtype == np.int64
        assert images.min() == 0.0 and images.max() == 1.0


def test_embedded_split_is_stratified_450_and_50_per_class():
    assert np.bincount(load_mnist("train")[1], minlength=10).tolist() == [450] * 10
    assert np.bincount(load_mnist("test")[1], minlength=10).tolist() == [50] * 10


def test_embedded_round_robin_order_makes_every_prefix_balanced():
    _, labels = load_mnist("train")
    assert labels[:20].tolist() == list(range(10)) * 2
    assert np.bincount(labels[:1000]).tolist() == [100] * 10


def test_embedded_train_and_test_are_disjoint():
    train_images, _ = load_mnist("train")
    test_images, _ = load_mnist("test")
    train_rows = {row.tobytes() for row in flatten(train_images)}
    assert not any(row.tobytes() in train_rows for row in flatten(test_images))
    assert len(train_rows) == 4500  # no duplicates inside train either


def test_embedded_is_the_last_50_of_each_class_in_file_order():
    with np.load(mnist_module.EMBEDDED_PATH) as archive:
        file_images, file_labels = archive["images"], archive["labels"]
    test_images, test_labels = load_mnist("test")
    for digit in range(10):
        expected = file_images[np.flatnonzero(file_labels == digit)[-50:]]
        np.testing.assert_array_equal(test_images[test_labels == digit][:, 0] * 255, expected)


def test_embedded_is_deterministic_and_callers_cannot_corrupt_the_cache():
    images, labels = load_mnist("train")
    reference_images, reference_labels = images.copy(), labels.copy()
    images[:] = -1.0  # returned arrays are the caller's own
    labels[:] = 7
    again_images, again_labels = load_mnist("train")
    np.testing.assert_array_equal(again_images, reference_images)
    np.testing.assert_array_equal(again_labels, reference_labels)


@pytest.mark.parametrize("alias", ["val", "validation"])
def test_validation_aliases_return_the_test_split(alias):
    np.testing.assert_array_equal(load_mnist(alias)[1], load_mnist("test")[1])
    np.testing.assert_array_equal(load_mnist(alias)[0], load_mnist("test")[0])


def test_unknown_split_lists_the_valid_ones():
    with pytest.raises(ValueError, match="valid splits: train, test, val, validation"):
        load_mnist("training")


def test_embedded_file_matches_recorded_sha256():
    digest = hashlib.sha256(mnist_module.EMBEDDED_PATH.read_bytes()).hexdigest()
    assert digest == mnist_module.EMBEDDED_SHA256
    assert mnist_module.EMBEDDED_PATH.stat().st_size < 1_500_000


def test_corrupt_embedded_file_is_rejected(tmp_path, monkeypatch):
    damaged = bytearray(mnist_module.EMBEDDED_PATH.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    path = tmp_path / "mnist_5k.npz"
    path.write_bytes(bytes(damaged))
    monkeypatch.setattr(mnist_module, "EMBEDDED_PATH", path)
    with pytest.raises(MNISTFormatError, match="corrupt: SHA-256"):
        load_mnist("train")


def test_missing_embedded_file_says_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist_module, "EMBEDDED_PATH", tmp_path / "absent.npz")
    with pytest.raises(FileNotFoundError, match="make_embedded_mnist"):
        load_mnist("test")


# ============================================================================ the real test set

@pytest.fixture
def shared_mnist_dir() -> Path:
    if not (SHARED_MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real MNIST test files not found in {SHARED_MNIST_DIR}")
    return SHARED_MNIST_DIR


def test_real_test_set_loads_10000_digits_with_known_class_counts(shared_mnist_dir):
    images, labels = load_mnist("test", data_dir=shared_mnist_dir)
    assert images.shape == (10000, 1, 28, 28) and images.dtype == np.float32
    assert labels.dtype == np.int64
    assert 0.0 == images.min() and images.max() == 1.0
    assert np.bincount(labels, minlength=10).tolist() == OFFICIAL_TEST_LABEL_COUNTS


def test_real_test_files_match_the_md5_constants(shared_mnist_dir):
    for name in IDX_NAMES["t10k"]:
        assert hashlib.md5((shared_mnist_dir / name).read_bytes()).hexdigest() == MNIST_MD5[name]


def test_embedded_digits_are_not_in_the_official_test_set(shared_mnist_dir):
    official = {row.tobytes() for row in flatten(load_mnist("test", shared_mnist_dir)[0])}
    embedded = np.concatenate([load_mnist("train")[0], load_mnist("test")[0]])
    assert not any(row.tobytes() in official for row in flatten(embedded))


# ============================================================================ generated IDX and Keras files

@pytest.mark.parametrize("gz,dot", [(True, False), (False, False), (True, True), (False, True)])
@pytest.mark.parametrize("split,prefix", [("train", "train"), ("test", "t10k"), ("val", "t10k")])
def test_idx_round_trip(tmp_path, gz, dot, split, prefix):
    images, labels = random_digits(7)
    write_idx_pair(tmp_path, prefix, images, labels, gz=gz, dot=dot)
    loaded_images, loaded_labels = load_mnist(split, data_dir=tmp_path)
    assert loaded_images.shape == (7, 1, 28, 28) and loaded_images.dtype == np.float32
    np.testing.assert_allclose(loaded_images[:, 0] * 255, images, atol=1e-4)
    assert loaded_labels.dtype == np.int64 and loaded_labels.tolist() == labels.tolist()


def test_keras_npz_round_trip(tmp_path):
    train_images, train_labels = random_digits(6, seed=1)
    test_images, test_labels = random_digits(4, seed=2)
    np.savez(tmp_path / "mnist.npz", x_train=train_images, y_train=train_labels,
             x_test=test_images, y_test=test_labels)
    images, labels = load_mnist("train", data_dir=str(tmp_path))
    assert images.shape == (6, 1, 28, 28) and labels.tolist() == train_labels.tolist()
    images, labels = load_mnist("test", data_dir=tmp_path)
    np.testing.assert_allclose(images[:, 0] * 255, test_images, atol=1e-4)
    assert labels.dtype == np.int64 and labels.tolist() == test_labels.tolist()


def test_keras_npz_without_expected_keys_is_a_format_error(tmp_path):
    np.savez(tmp_path / "mnist.npz", images=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(MNISTFormatError, match="mnist.npz.*x_train"):
        load_mnist("train", data_dir=tmp_path)


def test_truncated_images_file(tmp_path):
    images, labels = random_digits(5)
    image_path, _ = write_idx_pair(tmp_path, "t10k", images, labels, gz=False)
    image_path.write_bytes(image_path.read_bytes()[:-100])
    with pytest.raises(MNISTFormatError, match=r"t10k-images-idx3-ubyte.*3936 bytes.*found 3836"):
        load_mnist("test", data_dir=tmp_path)


def test_file_shorter_than_its_header(tmp_path):
    images, labels = random_digits(5)
    _, label_path = write_idx_pair(tmp_path, "t10k", images, labels)
    label_path.write_bytes(gzip.compress(b"\x00\x00\x08"))
    with pytest.raises(MNISTFormatError, match="t10k-labels-idx1-ubyte.gz.*too short"):
        load_mnist("test", data_dir=tmp_path)


def test_wrong_magic_number(tmp_path):
    images, labels = random_digits(5)
    _, label_path = write_idx_pair(tmp_path, "train", images, labels)
    label_path.write_bytes(gzip.compress(idx_labels_bytes(labels, magic=2051)))
    with pytest.raises(MNISTFormatError,
                       match="train-labels-idx1-ubyte.gz.*magic number 2051, expected 2049"):
        load_mnist("train", data_dir=tmp_path)


def test_wrong_image_dimensions(tmp_path):
    images, labels = random_digits(3)
    image_path, _ = write_idx_pair(tmp_path, "train", images, labels)
    image_path.write_bytes(gzip.compress(idx_images_bytes(np.zeros((3, 27, 28), np.uint8))))
    with pytest.raises(MNISTFormatError, match="train-images-idx3-ubyte.gz.*27x28, expected 28x28"):
        load_mnist("train", data_dir=tmp_path)


def test_image_and_label_counts_must_match(tmp_path):
    images, labels = random_digits(5)
    write_idx_pair(tmp_path, "t10k", images, labels)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_labels_bytes(labels[:4])))
    with pytest.raises(MNISTFormatError, match="t10k-images-idx3-ubyte.gz holds 5 images but "
                                               "t10k-labels-idx1-ubyte.gz holds 4 labels"):
        load_mnist("test", data_dir=tmp_path)


def test_label_out_of_range(tmp_path):
    images, labels = random_digits(5)
    labels[3] = 11
    write_idx_pair(tmp_path, "t10k", images, labels)
    with pytest.raises(MNISTFormatError, match="t10k-labels-idx1-ubyte.gz: label 11 at index 3"):
        load_mnist("test", data_dir=tmp_path)


@pytest.mark.parametrize("damage", ["flip_middle", "truncate", "not_gzip"])
def test_corrupt_gzip(tmp_path, damage):
    images, labels = random_digits(20)
    image_path, _ = write_idx_pair(tmp_path, "train", images, labels)
    data = bytearray(image_path.read_bytes())
    if damage == "flip_middle":
        data[len(data) // 2] ^= 0xFF
    elif damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data = bytearray(b"<html>404 Not Found</html>")
    image_path.write_bytes(bytes(data))
    with pytest.raises(MNISTFormatError, match="train-images-idx3-ubyte.gz"):
        load_mnist("train", data_dir=tmp_path)


def test_missing_files_list_the_names_looked_for(tmp_path):
    with pytest.raises(FileNotFoundError) as caught:
        load_mnist("test", data_dir=tmp_path)
    message = str(caught.value)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte", "t10k-images.idx3-ubyte",
                 "mnist.npz", str(tmp_path), "download_mnist"):
        assert name in message


def test_missing_labels_only_says_labels(tmp_path):
    images, labels = random_digits(3)
    _, label_path = write_idx_pair(tmp_path, "train", images, labels)
    label_path.unlink()
    with pytest.raises(FileNotFoundError, match="no MNIST labels for split 'train'"):
        load_mnist("train", data_dir=tmp_path)


def test_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_mnist("train", data_dir=tmp_path / "nowhere")


# ============================================================================ download from a local server

class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # keep pytest output clean
        pass


@pytest.fixture
def mirror_site(tmp_path, monkeypatch):
    """Serve tmp_path/www on 127.0.0.1: /good/ has correct small files, /bad/ wrong ones, /empty/ none.

    Returns (base URL, checksums of the good files, the good images/labels by prefix).
    """
    for variable in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(variable, "127.0.0.1,localhost")
    root = tmp_path / "www"
    checksums, contents = {}, {}
    for seed, (prefix, (image_name, label_name)) in enumerate(IDX_NAMES.items()):
        images, labels = random_digits(4 + seed, seed=seed)
        contents[prefix] = (images, labels)
        good = {image_name: gz_without_mtime(idx_images_bytes(images)),
                label_name: gz_without_mtime(idx_labels_bytes(labels))}
        for name, data in good.items():
            (root / "good").mkdir(parents=True, exist_ok=True)
            (root / "bad").mkdir(parents=True, exist_ok=True)
            (root / "good" / name).write_bytes(data)
            (root / "bad" / name).write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # wrong digest
            checksums[name] = hashlib.md5(data).hexdigest()
    (root / "empty").mkdir()

    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)  # short poll: shutdown() returns quickly
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", checksums, contents
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def unreachable_url() -> str:
    """A loopback port that nothing listens on (connection refused at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/mnist/"


def test_download_from_a_good_mirror(tmp_path, mirror_site):
    base, checksums, contents = mirror_site
    target = tmp_path / "downloaded"
    paths = download_mnist(target, mirrors=[base + "/good/"], timeout=5, checksums=checksums)
    assert sorted(p.name for p in paths) == sorted(checksums)
    assert sorted(p.name for p in target.iterdir()) == sorted(checksums)
    for path in paths:
        assert hashlib.md5(path.read_bytes()).hexdigest() == checksums[path.name]
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images, labels = load_mnist(split, data_dir=target)
        assert labels.tolist() == contents[prefix][1].tolist()
        np.testing.assert_allclose(images[:, 0] * 255, contents[prefix][0], atol=1e-4)


def test_download_falls_back_after_a_bad_digest(tmp_path, mirror_site):
    base, checksums, _ = mirror_site
    target = tmp_path / "downloaded"
    download_mnist(target, mirrors=[base + "/bad/", base + "/good"], timeout=5, checksums=checksums)
    assert sorted(p.name for p in target.iterdir()) == sorted(checksums)  # no .part left over
    for name, digest in checksums.items():
        assert hashlib.md5((target / name).read_bytes()).hexdigest() == digest


def test_download_accepts_sha256_checksums(tmp_path, mirror_site):
    base, checksums, _ = mirror_site
    sha256 = {name: hashlib.sha256((tmp_path / "www" / "good" / name).read_bytes()).hexdigest()
              for name in checksums}
    download_mnist(tmp_path / "d", mirrors=[base + "/good/"], timeout=5, checksums=sha256)
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == sorted(checksums)


def test_download_fails_clearly_when_every_mirror_fails(tmp_path, mirror_site, unreachable_url):
    base, checksums, _ = mirror_site
    target = tmp_path / "downloaded"
    mirrors = [base + "/bad/", base + "/empty/", unreachable_url]
    with pytest.raises(MNISTDownloadError) as caught:
        download_mnist(target, mirrors=mirrors, timeout=2, checksums=checksums)
    message = str(caught.value)
    for name in checksums:
        for mirror in mirrors:
            assert mirror.rstrip("/") + "/" + name in message
    assert "digest" in message and "HTTP 404" in message and "by hand" in message
    assert list(target.iterdir()) == []  # nothing partial, nothing unverified


def test_download_skips_files_already_present_and_replaces_wrong_ones(tmp_path, mirror_site,
                                                                      unreachable_url):
    base, checksums, _ = mirror_site
    target = tmp_path / "downloaded"
    target.mkdir()
    for name in checksums:
        shutil.copy(tmp_path / "www" / "good" / name, target / name)
    download_mnist(target, mirrors=[unreachable_url], timeout=2, checksums=checksums)  # no fetch needed

    stale = target / "t10k-labels-idx1-ubyte.gz"
    stale.write_bytes(b"stale")
    download_mnist(target, mirrors=[unreachable_url, base + "/good/"], timeout=2, checksums=checksums)
    assert hashlib.md5(stale.read_bytes()).hexdigest() == checksums[stale.name]
    assert sorted(p.name for p in target.iterdir()) == sorted(checksums)


def test_default_checksums_cover_the_four_official_files():
    assert sorted(MNIST_MD5) == sorted(name for pair in IDX_NAMES.values() for name in pair)
    assert all(len(digest) == 32 for digest in MNIST_MD5.values())


# ============================================================================ batching

def test_same_seed_same_batches_different_seed_different_order():
    x = np.arange(50)
    first = [b.tolist() for b in iterate_minibatches(x, batch_size=8, rng=3)]
    again = [b.tolist() for b in iterate_minibatches(x, batch_size=8, rng=3)]
    other = [b.tolist() for b in iterate_minibatches(x, batch_size=8, rng=4)]
    assert first == again and first != other


def test_one_generator_gives_a_new_reproducible_order_each_epoch():
    def two_epochs():
        rng = np.random.default_rng(0)
        return [np.concatenate(list(iterate_minibatches(np.arange(30), batch_size=7, rng=rng)))
                for _ in range(2)]
    epoch_1, epoch_2 = two_epochs()
    assert not np.array_equal(epoch_1, epoch_2)
    np.testing.assert_array_equal(two_epochs()[1], epoch_2)


def test_arrays_stay_aligned_and_every_sample_appears_once():
    x = np.arange(103)
    y = x * 2
    images = np.arange(103 * 4).reshape(103, 2, 2)
    batches = list(iterate_minibatches(x, y, images, batch_size=10, rng=0))
    assert [len(bx) for bx, _, _ in batches] == [10] * 10 + [3]
    for bx, by, bimages in batches:
        np.testing.assert_array_equal(by, bx * 2)
        np.testing.assert_array_equal(bimages[:, 0, 0], bx * 4)
    assert sorted(np.concatenate([bx for bx, _, _ in batches]).tolist()) == list(range(103))


def test_drop_last_and_no_shuffle():
    batches = list(iterate_minibatches(np.arange(23), batch_size=5, shuffle=False, drop_last=True))
    assert [b.tolist() for b in batches] == [list(range(i, i + 5)) for i in range(0, 20, 5)]


@settings(max_examples=60, deadline=None)
@given(count=st.integers(0, 60), batch_size=st.integers(1, 17), drop_last=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_epoch_covers_samples_exactly_once(count, batch_size, drop_last, seed):
    batches = list(iterate_minibatches(np.arange(count), batch_size=batch_size, rng=seed,
                                       drop_last=drop_last))
    seen = np.concatenate(batches) if batches else np.array([], dtype=int)
    assert len(set(seen.tolist())) == len(seen)  # no repeats
    expected = count - count % batch_size if drop_last else count
    assert len(seen) == expected
    assert all(len(b) == batch_size for b in batches[:-1])


def test_mismatched_lengths_and_bad_batch_size():
    with pytest.raises(ValueError, match=r"same length.*\[5, 4\]"):
        next(iterate_minibatches(np.zeros(5), np.zeros(4), batch_size=2))
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="batch_size"):
            next(iterate_minibatches(np.zeros(5), batch_size=bad))
    with pytest.raises(ValueError, match="at least one array"):
        next(iterate_minibatches(batch_size=2))


# ============================================================================ transforms

def test_one_hot():
    encoded = one_hot(np.array([0, 3, 9]))
    assert encoded.dtype == np.float32 and encoded.shape == (3, 10)
    np.testing.assert_array_equal(encoded.argmax(axis=1), [0, 3, 9])
    np.testing.assert_array_equal(encoded.sum(axis=1), 1.0)
    assert one_hot([1, 0], num_classes=2).tolist() == [[0, 1], [1, 0]]


@pytest.mark.parametrize("labels,match", [([1, 10, 12], r"0\.\.9, found \[10, 12\]"),
                                          ([-1, 2], r"found \[-1\]"),
                                          ([[1, 2]], r"shape \(N,\)"),
                                          ([0.5], "integer labels")])
def test_one_hot_rejects_bad_labels(labels, match):
    with pytest.raises(ValueError, match=match):
        one_hot(np.array(labels))


def test_to_unit_to_signed_and_flatten():
    raw = np.array([[0, 51, 255]], dtype=np.uint8)
    np.testing.assert_allclose(to_unit(raw), [[0.0, 0.2, 1.0]])
    unit = np.array([0.0, 0.5, 1.0], dtype=np.float64)
    assert to_unit(unit).dtype == np.float32
    np.testing.assert_allclose(to_signed(unit), [-1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        to_unit(np.array([-1.0, 0.5]))
    assert flatten(np.zeros((3, 1, 28, 28))).shape == (3, 784)


def test_binarize_fixed_is_strictly_above_threshold():
    x = np.array([0.0, 0.49, 0.5, 0.51, 1.0])
    assert binarize_fixed(x).tolist() == [0, 0, 0, 1, 1]
    assert binarize_fixed(x, threshold=0.2).tolist() == [0, 1, 1, 1, 1]
    assert binarize_fixed(x).dtype == np.float32


def test_binarize_dynamic_samples_bernoulli_pixels():
    probabilities = np.full((200, 100), 0.3)
    probabilities[:, 0], probabilities[:, 1] = 0.0, 1.0
    sample = binarize_dynamic(probabilities, rng=0)
    assert sample.dtype == np.float32 and set(np.unique(sample).tolist()) <= {0.0, 1.0}
    assert sample[:, 0].sum() == 0 and sample[:, 1].sum() == 200
    assert abs(sample[:, 2:].mean() - 0.3) < 0.01  # 19,600 draws: std of the mean ~ 0.003
    np.testing.assert_array_equal(sample, binarize_dynamic(probabilities, rng=0))
    assert not np.array_equal(sample, binarize_dynamic(probabilities, rng=1))
