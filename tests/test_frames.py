"""rl/frames.py: the episode and angle filters, the area downscale, and the .npz cache."""
import importlib.util
import os

import numpy as np
import pytest

from rl.frames import area_matrix, area_resize, cache_path, collect_frames, to_small_frame

# rendering needs gymnasium's classic-control extra (pygame); the resampling tests need NumPy only
needs_rendering = pytest.mark.skipif(
    importlib.util.find_spec("gymnasium") is None or importlib.util.find_spec("pygame") is None,
    reason='needs pip install "gymnasium[classic-control]"')


# ==================================================================== area averaging
def test_area_resize_of_constant_blocks_gives_the_block_values():
    blocks = np.arange(12, dtype=float).reshape(3, 4)             # 3 x 4 blocks of 5 x 5 pixels
    image = np.kron(blocks, np.ones((5, 5)))                       # (15, 20)
    np.testing.assert_allclose(area_resize(image, 3, 4), blocks, atol=1e-12)


def test_area_resize_preserves_the_mean_for_a_non_integer_ratio(rng):
    image = rng.random((400, 600))
    small = area_resize(image, 64, 64)                             # 6.25 and 9.375 pixels per output pixel
    assert small.shape == (64, 64)
    np.testing.assert_allclose(small.mean(), image.mean(), rtol=1e-12)
    assert image.min() <= small.min() and small.max() <= image.max()   # averages stay in range


def test_area_matrix_rows_are_averages_and_match_a_hand_computed_case():
    a = area_matrix(3, 2)                                          # each output cell covers 1.5 input cells
    np.testing.assert_allclose(a, [[2 / 3, 1 / 3, 0], [0, 1 / 3, 2 / 3]])
    np.testing.assert_allclose(area_matrix(600, 64).sum(axis=1), 1.0)
    np.testing.assert_allclose(area_matrix(600, 64).sum(axis=0), 64 / 600)


def test_to_small_frame_gray_and_rgb_shapes_and_range():
    screen = np.full((40, 60, 3), 255, np.uint8)
    screen[10:20, 30:40] = 0                                       # a black box inside the crop
    gray = to_small_frame(screen, 8, gray=True, crop=(0, 40, 20, 60))
    rgb = to_small_frame(screen, 8, gray=False)
    assert gray.shape == (1, 8, 8) and rgb.shape == (3, 8, 8)
    assert gray.dtype == np.float32 and 0 <= gray.min() and gray.max() <= 1
    np.testing.assert_allclose(gray.mean(), 1 - 100 / 1600, rtol=1e-5)   # dark area preserved by averaging
    with pytest.raises(ValueError, match="crop"):
        to_small_frame(screen, 8, crop=(0, 50, 0, 60))


# ==================================================================== filters (real rendering, few frames)
@needs_rendering
def test_reset_every_bounds_episode_length(tmp_path):
    data = collect_frames("CartPole-v1", num_frames=60, size=16, reset_every=7, angle_range=None,
                          seed=3, cache_dir=str(tmp_path))
    assert data["frames"].shape == (60, 1, 16, 16)
    _, lengths = np.unique(data["episodes"], return_counts=True)
    assert lengths.max() <= 7 and data["steps"].max() == 6
    # without a filter every frame is kept: episodes are consecutive runs 0..6
    np.testing.assert_array_equal(data["steps"][:14], list(range(7)) * 2)


@needs_rendering
def test_angle_filter_keeps_only_frames_within_range(tmp_path):
    # no resets: the random policy lets the pole fall far past the range, so the filter has work to do
    kept = collect_frames("CartPole-v1", num_frames=40, size=16, reset_every=None, angle_range=0.05,
                          seed=1, cache_dir=str(tmp_path))
    assert np.all(np.abs(kept["states"][:, 2]) <= 0.05)           # the state recorded with each frame
    np.testing.assert_array_equal(kept["angles"], kept["states"][:, 2])
    assert kept["steps"].max() > 0


@needs_rendering
def test_pendulum_angle_is_atan2_of_the_observation(tmp_path):
    data = collect_frames("Pendulum-v1", num_frames=10, size=16, reset_every=5, angle_range=None,
                          seed=0, cache_dir=str(tmp_path))
    cos, sin = data["states"][:, 0], data["states"][:, 1]
    np.testing.assert_allclose(data["angles"], np.arctan2(sin, cos), atol=1e-6)
    near_top = collect_frames("Pendulum-v1", num_frames=10, size=16, reset_every=5, angle_range=1.0,
                              seed=0, cache_dir=str(tmp_path))
    assert np.all(np.abs(np.arctan2(near_top["states"][:, 1], near_top["states"][:, 0])) <= 1.0)
    with pytest.raises(ValueError, match="no angle"):
        collect_frames("MountainCar-v0", num_frames=5, size=16, angle_range=0.3, cache_dir=str(tmp_path))


# ==================================================================== cache
@needs_rendering
def test_cache_hit_returns_the_same_arrays_and_options_change_the_file(tmp_path):
    options = dict(num_frames=12, size=16, reset_every=5, angle_range=0.3, seed=0, cache_dir=str(tmp_path))
    first = collect_frames("CartPole-v1", **options)
    files = os.listdir(tmp_path)
    assert len(files) == 1 and files[0].endswith(".npz")
    second = collect_frames("CartPole-v1", **options)              # read back from the cache
    assert os.listdir(tmp_path) == files
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])
        assert first[key].dtype == second[key].dtype
    collect_frames("CartPole-v1", **dict(options, reset_every=6))
    assert len(os.listdir(tmp_path)) == 2                          # a different option, a different file
    base = {"version": 1, "env_id": "CartPole-v1", "num_frames": 12, "size": 16, "gray": True,
            "reset_every": 5, "angle_range": 0.3, "seed": 0, "crop": None}
    assert cache_path(base) != cache_path(dict(base, seed=1)) != cache_path(dict(base, gray=False))
