"""RLlib multi-agent PPO on the routing game: one PPO router per task, shared modules.

The game (``routing_env.routing_game_v0``, one agent ``router_t`` per task) reaches RLlib through
RLlib's own PettingZoo wrapper, ``ParallelPettingZooEnv``; ``flatten_observation=True`` gives
every router a flat ``Box`` observation (activation, one-hot task, one-hot depth), which RLlib's
default MLP encoder takes. Every iteration prints each router's mean return (+1 for a correct
prediction, -1 for a wrong one); at the end the routers route the test split greedily through
the modules they trained, and the script prints each task's test accuracy.

RLlib pins its own Gymnasium, so run this in RLlib's environment (``make test-rllib`` builds
``.venv-rllib``; or ``pip install 'routing-env[rllib]'`` in a fresh one):

    .venv-rllib/bin/python examples/rllib_multiagent_ppo.py                 # 1-2 minutes
    .venv-rllib/bin/python examples/rllib_multiagent_ppo.py --shared-policy --iterations 20
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import ray
import torch
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
from ray.rllib.env.wrappers.pettingzoo_env import ParallelPettingZooEnv
from ray.tune.registry import register_env

from routing_env import routing_game_v0
from routing_env.routing_game_v0 import RoutingGame


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="synthetic-mtl", help="a suite name or an .npz")
    parser.add_argument("--iterations", type=int, default=8, help="PPO training iterations")
    parser.add_argument(
        "--batch", type=int, default=1024, help="env steps (rounds x depth) per iteration"
    )
    parser.add_argument("--lr", type=float, default=1e-3, help="PPO learning rate")
    parser.add_argument("--shared-policy", action="store_true", help="one policy for all routers")
    parser.add_argument("--test-rounds", type=int, default=200, help="test rounds at the end")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def task_of(agent: str) -> int:
    """``"router_12"`` -> 12, to print the routers in task order."""
    return int(agent.rsplit("_", 1)[1])


def evaluate_on_test(
    algo: Algorithm, game: RoutingGame, policy_of: dict[str, str], rounds: int, seed: int
) -> dict[str, float]:
    """Greedy routes on ``game`` (the test split): each router's fraction of correct
    predictions. The policies are not masked, so a greedy masked action counts as wrong, as
    the game scores it."""
    correct = {agent: 0 for agent in game.possible_agents}
    for round_index in range(rounds):
        # Seed once: the test split is read in order, and each reset then draws the next sample.
        observations, infos = game.reset(seed=seed if round_index == 0 else None)
        finished: set[str] = set()
        while game.agents:
            actions = {}
            for agent, observation in observations.items():
                module = algo.get_module(policy_of[agent])
                with torch.no_grad():
                    out = module.forward_inference({"obs": torch.as_tensor(observation)[None]})
                actions[agent] = int(out["action_dist_inputs"][0].argmax())
            observations, rewards, terminations, truncations, infos = game.step(actions)
            # An agent's route may end before the round does; its first done info is its result.
            for agent, info in infos.items():
                if info["route_done"] and agent not in finished:
                    finished.add(agent)
                    correct[agent] += int(info["correct"])
    return {agent: count / rounds for agent, count in correct.items()}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # Tiny MLPs on batches of a few observations: one torch thread is faster than several
    # fighting over the cores, and leaves the rest to the environment.
    torch.set_num_threads(1)
    game_options = {"dataset": args.dataset, "flatten_observation": True}

    # The modules live in the environment. Every game RLlib builds gets this one network, so the
    # sub-environments of an env runner route through, and train, the same modules.
    network = routing_game_v0.parallel_env(**game_options).network
    routers = routing_game_v0.parallel_env(network=network, **game_options).possible_agents
    register_env(
        "routing-game",
        lambda config: ParallelPettingZooEnv(
            routing_game_v0.parallel_env(network=network, **config)
        ),
    )

    if args.shared_policy:
        policy_of = {agent: "router" for agent in routers}
    else:
        policy_of = {agent: agent for agent in routers}

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    config = (
        PPOConfig()
        .environment("routing-game", env_config=game_options)
        .env_runners(num_env_runners=0, num_envs_per_env_runner=2)
        .multi_agent(
            policies=set(policy_of.values()),
            policy_mapping_fn=lambda agent_id, episode, **kwargs: policy_of[agent_id],
        )
        # RLlib's default PPO learning rate (5e-5) is made for large networks and long runs.
        .training(
            lr=args.lr, train_batch_size_per_learner=args.batch, minibatch_size=256, num_epochs=4
        )
        .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=[64, 64]))
        .debugging(seed=args.seed)
    )
    algo = config.build_algo()
    started = time.perf_counter()

    print(f"{'iter':>4} {'steps':>7} {'secs':>6} {'mean':>6}  per-router mean return")
    for iteration in range(1, args.iterations + 1):
        result = algo.train()["env_runners"]
        returns = result.get("agent_episode_returns_mean", {})
        per_router = " ".join(
            f"{task_of(a)}:{returns[a]:+.2f}" for a in sorted(returns, key=task_of)
        )
        mean = np.mean(list(returns.values())) if returns else float("nan")
        steps = result["num_env_steps_sampled_lifetime"]
        seconds = time.perf_counter() - started
        print(f"{iteration:>4} {steps:>7.0f} {seconds:>6.1f} {mean:>+6.2f}  {per_router}")

    # register_env stores a pickled copy of the creator, network included: the trained modules
    # are those of the games RLlib built in its (local) env runner.
    trained = algo.env_runner.env.envs[0].unwrapped.par_env.network
    test_game = routing_game_v0.parallel_env(network=trained, split="test", **game_options)
    accuracy = evaluate_on_test(algo, test_game, policy_of, args.test_rounds, args.seed)
    per_router = " ".join(f"{task_of(a)}:{accuracy[a]:.2f}" for a in sorted(accuracy, key=task_of))
    print(f"test accuracy per router: {per_router}")
    print(f"mean test accuracy: {np.mean(list(accuracy.values())):.3f}")
    algo.stop()
    ray.shutdown()


if __name__ == "__main__":
    main()
