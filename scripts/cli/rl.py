"""train.py dqn | reinforce | es: the CartPole-v1 agents of rl/ (flags mirror each config dataclass).

Each run writes into --out DIR:
    metrics.json   episode_returns (every training episode, in order; for es every population member),
                   greedy_eval_returns (100 fresh episodes, greedy / most likely action, env seed + 10000),
                   first_episode_avg300 / first_step_avg300 / first_episode_avg475 / first_step_avg475
                   (first episode, and env steps up to its end, at which the 100-episode average reaches
                   the bar; null if never), wall_seconds, env_steps, env_steps_per_second, model, config
    durations.png  episode durations and their 100-episode running average (first 1000 episodes)
    losses.png     the loss curves (DQN: TD loss per episode; REINFORCE: policy/value loss per update;
                   ES: the size of each update);  es_returns.png (es): returns per generation
    checkpoint.npz everything needed to continue exactly (networks, optimisers, replay buffer, every
                   generator, counters, history)

Resuming: checkpoints are taken only BETWEEN episodes (dqn), updates (reinforce) or generations (es),
every --checkpoint-every of them and at the end. Ctrl-C (or SIGTERM) does not stop mid-episode: the
current episode / update / generation is finished (at most a few seconds), a checkpoint is saved and the
program exits with 130; a second Ctrl-C aborts at once (the last periodic checkpoint stays). `--resume
DIR` then continues with the saved configuration up to the budget given on the command line
(--episodes/--steps/--generations), and produces exactly the returns an uninterrupted run would.
Resume with the SAME budget for that guarantee: DQN's learning-rate decay (and REINFORCE's, if enabled)
is a schedule over the budget, so a larger budget on resume continues a different schedule.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import signal
import sys

import numpy as np

from cli.common import (UsageError, Stopwatch, add_common_args, load_run_checkpoint, out_dir, positive_int,
                        print_summary, progress, save_curves, save_run_checkpoint, write_metrics)

BUDGET_FIELDS = ("episodes", "steps", "generations")
EVAL_EPISODES = 100


def _algorithms():
    """name -> (agent class, config class, unit of one train_step, default --checkpoint-every)."""
    from rl.dqn import DQN, DQNConfig
    from rl.es import ES, ESConfig
    from rl.reinforce import Reinforce, ReinforceConfig
    return {"dqn": (DQN, DQNConfig, "episode", 100),
            "reinforce": (Reinforce, ReinforceConfig, "update", 100),
            "es": (ES, ESConfig, "generation", 10)}


HELP = {"dqn": "Deep Q-Network (replay buffer, target network, Double DQN) on CartPole-v1",
        "reinforce": "REINFORCE with returns-to-go and a baseline (none, mean, value) on CartPole-v1",
        "es": "evolution strategies (antithetic, rank-normalised) on CartPole-v1"}


# ==================================================================== flags from the dataclass
def _add_config_flags(parser: argparse.ArgumentParser, config_cls) -> None:
    """--field-name for every field of the config dataclass, with its default and help line."""
    for field in dataclasses.fields(config_cls):
        flag = "--" + field.name.replace("_", "-")
        help_text = field.metadata.get("help", "") + " (default: %(default)s)"
        kind = str(field.type)
        if kind == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=field.default, help=help_text)
        elif kind == "tuple":
            parser.add_argument(flag, type=positive_int, nargs="*", default=field.default, metavar="N",
                                help=help_text)
        elif kind == "int | None":
            parser.add_argument(flag, type=positive_int, default=field.default, metavar="N", help=help_text)
        elif kind == "str":
            choices = ("none", "mean", "value") if field.name == "baseline" else None
            parser.add_argument(flag, default=field.default, choices=choices, help=help_text)
        elif kind == "int":
            parser.add_argument(flag, type=int, default=field.default, metavar="N", help=help_text)
        elif kind == "float":
            parser.add_argument(flag, type=float, default=field.default, metavar="X", help=help_text)
        else:
            raise TypeError(f"{config_cls.__name__}.{field.name}: no flag for type {kind}")


def register(subparsers) -> None:
    for name, (_, config_cls, unit, every) in _algorithms().items():
        parser = subparsers.add_parser(name, help=HELP[name], description=HELP[name] + ". " + __doc__,
                                       formatter_class=argparse.RawDescriptionHelpFormatter)
        add_common_args(parser, mnist=False)
        _add_config_flags(parser, config_cls)
        parser.add_argument("--checkpoint-every", type=positive_int, default=every, metavar="N",
                            help=f"save checkpoint.npz every N {unit}s (default: %(default)s)")
        parser.set_defaults(run=run)


def _config_from_args(config_cls, args):
    values = {}
    for field in dataclasses.fields(config_cls):
        value = getattr(args, field.name)
        values[field.name] = tuple(value) if str(field.type) == "tuple" else value
    _check_config(config_cls, values)
    return config_cls(**values)


def _check_config(config_cls, values: dict) -> None:
    if not any(values.get(k) for k in BUDGET_FIELDS):
        raise UsageError("no training budget: give --episodes, --steps" + (" or --generations"
                                                                          if "generations" in values else ""))
    for key in ("gamma", "tau", "eps_start", "eps_end", "lr_final_fraction"):
        if key in values and not 0.0 <= values[key] <= 1.0:
            raise UsageError(f"--{key.replace('_', '-')} must be in [0, 1], got {values[key]}")
    for key in ("lr", "value_lr", "sigma", "alpha", "batch_size", "buffer_size", "train_frequency",
                "target_update_interval", "gradient_steps", "episodes_per_update", "population_pairs"):
        if key in values and not values[key] > 0:
            raise UsageError(f"--{key.replace('_', '-')} must be positive, got {values[key]}")


# ==================================================================== stopping at a boundary
@contextlib.contextmanager
def _stop_at_boundary():
    """Yields a dict whose "requested" turns True on the first Ctrl-C / SIGTERM; a second one raises
    KeyboardInterrupt at once. The training loop checks the flag between episodes."""
    state = {"requested": False}

    def handler(signum, frame):
        if state["requested"]:
            raise KeyboardInterrupt
        state["requested"] = True
        print("\nstopping after the current episode to save a checkpoint (Ctrl-C again: abort now)",
              file=sys.stderr)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield state
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


# ==================================================================== one run
def run(args) -> None:
    algorithms = _algorithms()
    agent_cls, config_cls, unit, _ = algorithms[args.model]
    directory = out_dir(args, args.model)
    seed = args.seed

    if args.resume:
        checkpoint = load_run_checkpoint(directory)
        meta = checkpoint.pop("meta")
        if meta.get("model") != args.model:
            raise UsageError(f"--resume {directory}: the checkpoint is a {meta.get('model')!r} run, "
                             f"not {args.model!r}")
        values = dict(meta["config"])
        for key in BUDGET_FIELDS:                         # the budget comes from this command line
            if key in values:
                values[key] = getattr(args, key)
        values["hidden"] = tuple(values["hidden"])
        _check_config(config_cls, values)
        cfg, seed = config_cls(**values), int(meta["seed"])
        agent = agent_cls(cfg, seed)
        agent.load_state_dict(meta, checkpoint)
        watch, train_watch = Stopwatch(meta["wall_seconds"]), Stopwatch(meta["train_seconds"])
    else:
        cfg = _config_from_args(config_cls, args)
        agent = agent_cls(cfg, seed)
        watch, train_watch = Stopwatch(), Stopwatch()

    def save(train_seconds=None):
        agent_meta, sections = agent.state_dict()
        train_seconds = train_watch.seconds if train_seconds is None else train_seconds
        save_run_checkpoint(directory, dict(agent_meta, model=args.model, seed=seed,
                                            config=dataclasses.asdict(cfg), wall_seconds=watch.seconds,
                                            train_seconds=train_seconds), **sections)

    # ---- training, with a progress bar showing the 100-episode running average
    bar = progress(cfg.generations if args.model == "es" and cfg.generations else
                   cfg.episodes or cfg.steps, f"{args.model} {unit}s" if args.model == "es" else
                   f"{args.model} {'episodes' if cfg.episodes else 'steps'}")
    done_before, calls = _bar_position(agent, cfg, args.model), 0
    bar.update(done_before)
    with _stop_at_boundary() as stop:
        while not agent.finished():
            agent.train_step()
            calls += 1
            position = _bar_position(agent, cfg, args.model)
            bar.update(position - done_before)
            done_before = position
            returns = agent.episode_returns
            bar.set_postfix(avg100=f"{np.mean(returns[-100:]):.1f}", steps=agent.env_steps)
            if stop["requested"]:
                bar.close()
                save()
                print(f"checkpoint saved in {directory}; continue with --resume {directory}", file=sys.stderr)
                raise SystemExit(130)
            if calls % args.checkpoint_every == 0:
                save()
    bar.close()
    train_seconds = train_watch.seconds

    # ---- greedy evaluation on fresh episodes (env seeded differently from training) and outputs
    from rl.common import EVAL_SEED_OFFSET, crossing_metrics, running_average
    eval_returns = agent.evaluate(EVAL_EPISODES, seed + EVAL_SEED_OFFSET)
    save(train_seconds)
    returns = agent.episode_returns
    metrics = {
        "model": args.model, "config": dict(dataclasses.asdict(cfg), seed=seed, out=directory,
                                            checkpoint_every=args.checkpoint_every),
        "episode_returns": returns,
        "greedy_eval_returns": eval_returns,
        "greedy_eval_mean": float(np.mean(eval_returns)),
        **crossing_metrics(returns),
        "episodes": len(returns),
        "final_avg100": float(np.mean(returns[-100:])) if returns else None,
        "env_steps": agent.env_steps,
        "train_seconds": train_seconds,
        "wall_seconds": watch.seconds,
        "env_steps_per_second": agent.env_steps / max(train_seconds, 1e-9),
        "losses": {k: [None if not np.isfinite(x) else x for x in v] for k, v in agent.losses().items()},
    }
    if args.model == "dqn":
        metrics["updates"] = agent.updates
    if args.model == "es":
        metrics.update(generations=agent.generation, generation_mean_returns=agent.generation_mean_returns,
                       generation_max_returns=agent.generation_max_returns,
                       generation_min_returns=agent.generation_min_returns)
    write_metrics(directory, metrics)

    first = np.asarray(returns[:1000])
    save_curves(os.path.join(directory, "durations.png"),
                {"episode duration": first, "100-episode average": running_average(first)},
                xlabel="episode", ylabel="duration (steps)", title=f"{args.model} on CartPole-v1 (seed {seed})")
    x_label = {"dqn": "episode", "reinforce": "update", "es": "generation"}[args.model]
    save_curves(os.path.join(directory, "losses.png"),
                {k: np.asarray(v, dtype=np.float64) for k, v in agent.losses().items()},
                xlabel=x_label, ylabel="loss" if args.model != "es" else "|theta step|",
                title=f"{args.model} training losses")
    if args.model == "es":
        save_curves(os.path.join(directory, "es_returns.png"),
                    {"population mean": agent.generation_mean_returns,
                     "population max": agent.generation_max_returns,
                     "population min": agent.generation_min_returns},
                    xlabel="generation", ylabel="episode return", title=f"ES on CartPole-v1 (seed {seed})")
    print_summary(directory, {k: metrics[k] for k in (
        "model", "episodes", "env_steps", "first_episode_avg300", "first_step_avg300", "first_episode_avg475",
        "first_step_avg475", "greedy_eval_mean", "wall_seconds", "env_steps_per_second")})


def _bar_position(agent, cfg, model: str) -> int:
    if model == "es" and cfg.generations:
        return agent.generation
    return len(agent.episode_returns) if cfg.episodes else agent.env_steps


# ==================================================================== evaluate.py
def evaluate(run_dir: str, model_name: str, data_dir, seed: int) -> dict:
    """Greedy returns of the saved final policy on 100 fresh episodes (env seed `seed + 10000`)."""
    from rl.common import EVAL_SEED_OFFSET
    agent_cls, config_cls, _, _ = _algorithms()[model_name]
    checkpoint = load_run_checkpoint(run_dir)
    meta = checkpoint.pop("meta")
    values = dict(meta["config"])
    values["hidden"] = tuple(values["hidden"])
    agent = agent_cls(config_cls(**values), int(meta["seed"]))
    agent.load_state_dict(meta, checkpoint)
    returns = agent.evaluate(EVAL_EPISODES, seed + EVAL_SEED_OFFSET)
    return {"model": model_name, "greedy_eval_mean": float(np.mean(returns)),
            "greedy_eval_min": float(np.min(returns)), "greedy_eval_episodes": len(returns)}
