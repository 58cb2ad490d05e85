"""train.py dqn | reinforce | es | actor-critic: flags and figures for the CartPole-v1 agents of rl/ (each
agent's file holds its networks, loss and training loop; the flags mirror its config dataclass).

Each run writes into --out DIR: metrics.json (episode_returns, every training episode in order;
greedy_eval_returns, 100 fresh greedy episodes of the DELIVERED policy on rl.common.report_env_seed(seed);
delivered, "final" or "best_eval"; final_greedy_eval_returns, the final network on the same episodes;
first_episode_avg300/475 and first_step_avg300/475, when the 100-episode average first reaches the bar,
null if never; env_steps, env_steps_per_second, wall_seconds, model, config), durations.png, losses.png
and checkpoint.npz (everything to continue exactly), saved between units (episode, update, generation).

Ctrl-C lets the current unit finish, saves and exits 130; `--resume DIR` continues with the saved
configuration up to the budget given on the command line (--episodes/--steps/--generations). Resume with
the SAME budget to reproduce an uninterrupted run exactly (learning-rate schedules run over the budget).
"""
from __future__ import annotations

import argparse
import dataclasses

import numpy as np

import rl
from nets.harness import Run, UsageError, add_config_flags, add_run_flags, config_from, read_checkpoint
from cli.common import print_summary, save_curves
from rl.common import crossing_metrics, report_env_seed, running_average, split_state

BUDGET_FIELDS = ("episodes", "steps", "generations")
EVAL_EPISODES = 100


HELP = {"dqn": "Deep Q-Network (replay buffer, target network, Double DQN) on CartPole-v1",
        "reinforce": "REINFORCE with returns-to-go and a baseline (none, mean, value) on CartPole-v1",
        "es": "evolution strategies (antithetic, rank-normalised) on CartPole-v1",
        "actor-critic": "actor-critic (GAE, parallel environments, rollouts reused with PPO's clipped ratio; "
                        "--epochs 1: plain A2C) on CartPole-v1"}


def register(subparsers) -> None:
    for name in rl.AGENTS:
        parser = subparsers.add_parser(name, help=HELP[name], description=HELP[name] + ". " + __doc__,
                                       formatter_class=argparse.RawDescriptionHelpFormatter)
        add_run_flags(parser)
        add_config_flags(parser, rl.load(name).Config)
        parser.set_defaults(run=run)


def run(args) -> None:
    family = rl.load(args.command)
    run = Run(args.command, args, family.Config, may_change=BUDGET_FIELDS)
    cfg = run.config
    budgets = [name for name in BUDGET_FIELDS if name in {f.name for f in dataclasses.fields(cfg)}]
    if not any(getattr(cfg, name) for name in budgets):
        raise UsageError("no training budget: give " + " or ".join(f"--{name}" for name in budgets))
    agent = family.Agent(cfg, run.seed)
    if run.resumed:
        agent.load_state_dict({**run.state["agent"], **run.sections})

    def save() -> None:
        meta, sections = split_state(agent.state_dict())
        run.save({"agent": meta}, **sections)

    total = agent.budget()[1]
    for _ in run.loop_until(agent.finished, lambda: agent.budget()[0], total, save, unit=agent.unit):
        agent.train_step()
        returns = agent.episode_returns
        run.show(avg100=float(np.mean(returns[-100:])) if returns else 0.0, steps=agent.env_steps)
    train_seconds = run.wall_seconds

    # ---- greedy evaluation on fresh episodes of the reporting env seed (never used to select)
    run.stage(f"greedy evaluation, {EVAL_EPISODES} episodes")
    seed = report_env_seed(run.seed)
    eval_returns = agent.evaluate(EVAL_EPISODES, seed)
    final_returns = eval_returns if agent.delivered == "final" else agent.evaluate_final(EVAL_EPISODES, seed)
    returns = agent.episode_returns
    metrics = run.write_metrics({
        "episode_returns": returns,
        "greedy_eval_returns": eval_returns, "greedy_eval_mean": float(np.mean(eval_returns)),
        "final_greedy_eval_returns": final_returns, "final_greedy_eval_mean": float(np.mean(final_returns)),
        "delivered": agent.delivered, "report_env_seed": seed,
        **crossing_metrics(returns),
        "episodes": len(returns), "final_avg100": float(np.mean(returns[-100:])) if returns else None,
        "env_steps": agent.env_steps, "train_seconds": train_seconds,
        "env_steps_per_second": agent.env_steps / max(train_seconds, 1e-9),
        "losses": agent.losses(), **agent.extra_metrics()})

    first = np.asarray(returns[:1000])
    save_curves(run.path("durations.png"), {"episode duration": first, "100-episode average": running_average(first)},
                xlabel="episode", ylabel="duration (steps)", title=f"{args.command} on CartPole-v1 (seed {run.seed})")
    save_curves(run.path("losses.png"), {k: np.asarray(v, dtype=np.float64) for k, v in agent.losses().items()},
                xlabel=agent.unit, ylabel="loss", title=f"{args.command} training losses")
    for name, (title, xlabel, ylabel, curves) in agent.figures().items():
        save_curves(run.path(name), curves, xlabel=xlabel, ylabel=ylabel, title=title)   # e.g. es_returns.png
    print_summary(run.dir, {k: metrics[k] for k in (
        "model", "episodes", "env_steps", "first_episode_avg300", "first_step_avg300", "first_episode_avg475",
        "first_step_avg475", "delivered", "greedy_eval_mean", "final_greedy_eval_mean", "wall_seconds",
        "env_steps_per_second")})


def evaluate(run_dir: str, model_name: str, data_dir, seed: int) -> dict:
    """Greedy returns of the saved delivered policy on 100 fresh episodes (the reporting env seed of `seed`)."""
    family = rl.load(model_name)
    checkpoint = read_checkpoint(run_dir)
    meta = checkpoint.pop("meta")
    agent = family.Agent(config_from(family.Config, meta["config"]), int(meta["seed"]))
    agent.load_state_dict({**meta["state"]["agent"], **checkpoint})
    returns = agent.evaluate(EVAL_EPISODES, report_env_seed(seed))
    return {"model": model_name, "greedy_eval_mean": float(np.mean(returns)),
            "greedy_eval_min": float(np.min(returns)), "greedy_eval_episodes": len(returns)}
