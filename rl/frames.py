r"""Frames rendered from a gymnasium environment under a random policy, shrunk to small square images.

This is the data of the conv-VAE homework: run CartPole (or Pendulum, ...) with random actions, take
a picture after every step, and keep the pictures that pass two filters:

    reset_every  the environment is reset after this many frames, so no episode in the data set is
                 longer than `reset_every` frames (the cart never drifts far from the centre).
    angle_range  keep a frame only if |angle| <= angle_range, where the angle is read from the env
                 state recorded with that very frame (None: keep every frame).

Which frames belong to an episode. The frame right after `reset()` is step 0 of an episode; every
`step()` adds one frame. An episode ends after `reset_every` frames or when the env *truncates*
(its time limit). It does NOT end when CartPole reports `terminated` (|angle| > 0.21 rad or the cart
off the track): like the homework, we keep stepping so the pole goes on falling -- exactly the frames
the angle filter is there to remove. (gymnasium warns once per episode about stepping a terminated
CartPole; that warning is silenced here because it is intended.) Frames removed by the angle filter
still count towards `reset_every`: the episode clock is the env's, not the data set's.

The angle of each environment (`ANGLE_OF`), from the observation `obs` recorded with the frame:
    CartPole-v1  obs = (x, x_dot, theta, theta_dot): angle = theta = obs[2], 0 = pole upright.
    Pendulum-v1  obs = (cos theta, sin theta, theta_dot): angle = atan2(sin, cos) in (-pi, pi],
                 0 = pendulum upright. A random policy rarely holds it up, so the filter keeps few
                 frames there; the training CLI turns it off for Pendulum unless asked.
    other envs   no angle is defined: pass angle_range=None.

From a screen to size x size pixels (`to_small_frame`):
    1. crop a fixed window (`CROP_OF`, in screen pixels top, bottom, left, right). For CartPole the
       400 x 600 screen is mostly empty sky and track, and the pole is only 10 px wide: a 240 x 240
       window around the middle of the track (rows 120-360, columns 180-420) holds the whole upright
       pole (top at row ~172), the cart (rows 285-315) and the track line (row 300) for cart positions
       |x| < 0.76 m, which random play with resets every 20 frames stays well inside. At 32 px one
       output pixel is 7.5 x 7.5 screen pixels, so the pole is ~1.3 px wide and 16 px long: visible.
       (Without resets the cart wanders out of that window; pass crop=None for the whole screen.)
       Pendulum: the 260 x 260 middle of the 500 x 500 screen (the rod reaches 125 px from the centre).
    2. gray (ITU-R 601 luma 0.299 R + 0.587 G + 0.114 B) or RGB, scaled to [0, 1]; background is white.
    3. area averaging to size x size, exactly, for any ratio:  out = A_h @ img @ A_w^T, where row i of
       A_h (size x H) holds the fraction of output pixel i covered by each input row (rows sum to 1).
       When H is a multiple of size this is the plain mean over H/size x H/size blocks.

Results are cached as .npz under ~/.cache/numpy-dl-lab/frames/ (or `cache_dir`), keyed by a hash of
every option, written atomically (temp file + rename), so a second call with the same options reads
the file instead of rendering again.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import warnings

import numpy as np

DEFAULT_CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "numpy-dl-lab", "frames")
_CACHE_VERSION = 1          # bump when the way frames are made changes, so old caches are not reused

# (top, bottom, left, right) window of the rendered screen, in screen pixels (see the module docstring)
CROP_OF = {
    "CartPole-v1": (120, 360, 180, 420),
    "Pendulum-v1": (120, 380, 120, 380),
}

# the angle of the env state, read from the observation recorded with each frame
ANGLE_OF = {
    "CartPole-v1": lambda obs: float(obs[2]),
    "Pendulum-v1": lambda obs: math.atan2(float(obs[1]), float(obs[0])),
}


# ==================================================================== resampling
def area_matrix(n_in: int, n_out: int) -> np.ndarray:
    r"""(n_out, n_in) area-averaging weights: A[i, j] = |[j, j+1) n [i s, (i+1) s)| / s with s = n_in/n_out,
    the share of input cell j inside output cell i. Each row sums to 1 (an average); each column sums
    to n_out/n_in, so the image's mean is preserved."""
    if n_out <= 0 or n_in <= 0:
        raise ValueError(f"area_matrix: sizes must be positive, got n_in={n_in}, n_out={n_out}")
    s = n_in / n_out
    lo = np.arange(n_out)[:, None] * s                   # output cell i covers [lo_i, hi_i)
    hi = lo + s
    j = np.arange(n_in)[None, :]                          # input cell j covers [j, j+1)
    overlap = np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0, None)
    return overlap / s


def area_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W) or (H, W, C) float image -> (height, width[, C]) by exact area averaging."""
    image = np.asarray(image, dtype=np.float64)
    if image.ndim not in (2, 3):
        raise ValueError(f"area_resize: expected an (H, W) or (H, W, C) image, got shape {image.shape}")
    a_h = area_matrix(image.shape[0], height)            # (height, H)
    a_w = area_matrix(image.shape[1], width)             # (width, W)
    if image.ndim == 2:
        return a_h @ image @ a_w.T
    return np.einsum("ih,hwc,jw->ijc", a_h, image, a_w)


def to_small_frame(screen: np.ndarray, size: int, gray: bool = True, crop=None) -> np.ndarray:
    """(H, W, 3) uint8 screen -> (C, size, size) float32 in [0, 1]; C = 1 (gray) or 3 (RGB).
    crop: (top, bottom, left, right) in screen pixels, or None for the whole screen."""
    screen = np.asarray(screen)
    if screen.ndim != 3 or screen.shape[2] != 3:
        raise ValueError(f"to_small_frame: expected an (H, W, 3) RGB screen, got shape {screen.shape}")
    if crop is not None:
        top, bottom, left, right = crop
        if not (0 <= top < bottom <= screen.shape[0] and 0 <= left < right <= screen.shape[1]):
            raise ValueError(f"to_small_frame: crop {crop} does not fit in a screen of shape {screen.shape}")
        screen = screen[top:bottom, left:right]
    image = screen.astype(np.float64) / 255.0
    if gray:
        image = image @ np.array([0.299, 0.587, 0.114])   # (H, W)
    small = area_resize(image, size, size)
    small = small[None] if gray else small.transpose(2, 0, 1)
    return np.clip(small, 0.0, 1.0).astype(np.float32)


# ==================================================================== collecting
def _options(env_id, num_frames, size, gray, reset_every, angle_range, seed, crop) -> dict:
    return {"version": _CACHE_VERSION, "env_id": env_id, "num_frames": int(num_frames), "size": int(size),
            "gray": bool(gray), "reset_every": None if reset_every is None else int(reset_every),
            "angle_range": None if angle_range is None else float(angle_range), "seed": int(seed),
            "crop": None if crop is None else [int(c) for c in crop]}


def cache_path(options: dict, cache_dir: str | None = None) -> str:
    """<cache_dir>/<env>-<size>px-<gray|rgb>-<hash of all options>.npz"""
    key = hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:16]
    name = f"{options['env_id']}-{options['size']}px-{'gray' if options['gray'] else 'rgb'}-{key}.npz"
    return os.path.join(cache_dir or DEFAULT_CACHE_DIR, name)


def collect_frames(env_id: str = "CartPole-v1", num_frames: int = 5000, size: int = 32, gray: bool = True,
                   reset_every: int | None = 20, angle_range: float | None = 0.3, seed: int = 0,
                   crop="auto", cache_dir: str | None = None, use_cache: bool = True,
                   max_steps: int | None = None) -> dict:
    """Render `num_frames` kept frames of `env_id` under a seeded random policy (see the module docstring).

    crop: "auto" (CROP_OF[env_id], or the whole screen for other envs), None (whole screen), or
    (top, bottom, left, right). max_steps: give up after this many env states (kept or filtered out;
    default 100 * num_frames + 1000) if the angle filter keeps too few.

    Returns a dict of arrays, one row per kept frame, in the order they were rendered:
        frames   float32 (N, C, size, size) in [0, 1] (C = 1 gray, 3 RGB)
        states   float32 (N, obs_dim)  the observation the env returned with that frame
        angles   float32 (N,)          ANGLE_OF[env_id](state), NaN for envs without an angle
        episodes int64 (N,)            which episode (0, 1, ...) the frame came from
        steps    int64 (N,)            the frame's step within its episode (0 = right after reset)
    """
    if num_frames <= 0 or size <= 0:
        raise ValueError(f"collect_frames: num_frames and size must be positive, got {num_frames}, {size}")
    if reset_every is not None and reset_every <= 0:
        raise ValueError(f"collect_frames: reset_every must be positive or None, got {reset_every}")
    if angle_range is not None and env_id not in ANGLE_OF:
        raise ValueError(f"collect_frames: no angle is defined for {env_id} (only for {sorted(ANGLE_OF)}); "
                         f"use angle_range=None (--angle-range none)")
    if isinstance(crop, str):
        if crop != "auto":
            raise ValueError(f"collect_frames: crop must be 'auto', None or (top, bottom, left, right), "
                             f"got {crop!r}")
        crop = CROP_OF.get(env_id)
    options = _options(env_id, num_frames, size, gray, reset_every, angle_range, seed, crop)
    path = cache_path(options, cache_dir)
    if use_cache and os.path.exists(path):
        with np.load(path) as cached:
            data = {k: cached[k] for k in cached.files}
        data["frames"] = data["frames"].astype(np.float32) / 255.0
        return data

    data = _render(options, max_steps if max_steps is not None else 100 * num_frames + 1000)
    if use_cache:
        from nets.checkpoint import save_npz_atomic
        stored = dict(data, frames=np.round(data["frames"] * 255).astype(np.uint8))   # 4x smaller on disk
        try:
            save_npz_atomic(path, stored, compressed=True)
        except OSError as error:                    # a read-only or full cache folder: render again next time
            print(f"warning: frames not cached: cannot write {path} ({error.strerror})", file=sys.stderr)
        data["frames"] = stored["frames"].astype(np.float32) / 255.0     # identical to what a cache hit returns
    return data


def _render(options: dict, max_steps: int) -> dict:
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")    # pygame draws off-screen: no display needed
    try:
        import gymnasium as gym
    except ImportError as error:
        raise ImportError('rendering frames needs gymnasium: '
                          'pip install "gymnasium[classic-control]"') from error

    env_id, angle_range, reset_every = options["env_id"], options["angle_range"], options["reset_every"]
    angle_of = ANGLE_OF.get(env_id, lambda obs: math.nan)
    try:
        env = gym.make(env_id, render_mode="rgb_array")
    except gym.error.Error as error:
        raise ValueError(f"collect_frames: cannot make environment {env_id!r}: {error}") from None
    env.action_space.seed(options["seed"])
    from tqdm import tqdm
    bar = tqdm(total=options["num_frames"], desc=f"rendering {env_id} frames (cached afterwards)",
               dynamic_ncols=True, disable=bool(os.environ.get("NO_PROGRESS")), mininterval=0.5)
    frames, states, angles, episodes, steps = [], [], [], [], []
    episode, step, seen = 0, 0, 0
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*already returned terminated = True.*")
        obs, _ = env.reset(seed=options["seed"])
        while len(frames) < options["num_frames"]:
            if seen >= max_steps:
                env.close()
                raise RuntimeError(f"collect_frames: only {len(frames)} of {options['num_frames']} frames of "
                                   f"{env_id} passed |angle| <= {angle_range} in {seen} env states; "
                                   f"widen angle_range or pass None")
            angle = angle_of(obs)
            seen += 1
            if angle_range is None or abs(angle) <= angle_range:
                frames.append(to_small_frame(env.render(), options["size"], options["gray"], options["crop"]))
                states.append(np.asarray(obs, dtype=np.float32))
                angles.append(angle)
                episodes.append(episode)
                steps.append(step)
                bar.update()
            obs, _, _, truncated, _ = env.step(env.action_space.sample())
            step += 1
            if truncated or (reset_every is not None and step >= reset_every):
                obs, _ = env.reset()
                episode, step = episode + 1, 0
    env.close()
    bar.close()
    return {"frames": np.stack(frames), "states": np.stack(states),
            "angles": np.asarray(angles, dtype=np.float32),
            "episodes": np.asarray(episodes, dtype=np.int64), "steps": np.asarray(steps, dtype=np.int64)}
