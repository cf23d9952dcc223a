"""A training run for the resume tests: ``python resume_run.py OUT KIND AGENT EPISODES EVERY``.

Trains ``AGENT`` on SyntheticMTL (``KIND``: ``single`` or ``vector``) with checkpoints in
``OUT`` (resuming from one that is there), then writes ``OUT/final.json``: the history and a
hash of the module parameters and of the router's state.
"""

import hashlib
import json
import sys

import numpy as np
import torch

import agents
from routing_env import RoutingEnv, RoutingVectorEnv

SMALL = {"samples_per_task": 80, "test_samples_per_task": 15}


def digest(tensors) -> str:
    hasher = hashlib.sha256()
    for tensor in tensors:
        hasher.update(np.ascontiguousarray(tensor.detach().cpu().numpy()).tobytes())
    return hasher.hexdigest()


def main() -> None:
    out, kind, name, episodes, every = sys.argv[1:6]
    torch.set_num_threads(1)
    torch.manual_seed(0)
    if kind == "game":
        game(out, name, int(episodes), int(every))
        return
    if kind == "vector":
        env = RoutingVectorEnv(8, "synthetic-mtl", dataset_options=SMALL)
    else:
        env = RoutingEnv("synthetic-mtl", dataset_options=SMALL)
    test = RoutingEnv("synthetic-mtl", split="test", network=env.network, dataset_options=SMALL)
    agent = agents.make_agent(name, test, seed=0)
    history = agents.train(
        agent,
        env,
        int(episodes),
        eval_env=test,
        seed=0,
        eval_every=int(episodes) // 4,
        progress=False,
        checkpoint_dir=out,
        checkpoint_every=int(every),
    )
    state = agent.state_dict()
    tensors = [v for k, v in sorted(state.items()) if isinstance(v, torch.Tensor)]
    result = {
        "history": {
            k: v for k, v in history.items() if k not in ("seconds", "final", "resumed_at")
        },
        "resumed_at": history["resumed_at"],
        "network": digest(env.network.parameters()),
        "agent": digest(tensors) + state["__rng__"],
        "updates": env.network.num_updates,
    }
    with open(f"{out}/final.json", "w") as handle:
        json.dump(result, handle)


def game(out: str, name: str, episodes: int, every: int) -> None:
    """The multi-agent form: one router per task on the game."""
    from routing_env import routing_game_v0

    play = routing_game_v0.parallel_env(dataset="synthetic-mtl", dataset_options=SMALL)
    test = routing_game_v0.parallel_env(
        dataset="synthetic-mtl", dataset_options=SMALL, split="test", network=play.network
    )
    policies = agents.make_population(name, play, seed=0)
    history = agents.train_multiagent(
        policies,
        play,
        episodes,
        eval_env=test,
        eval_every=episodes // 4,
        progress=False,
        checkpoint_dir=out,
        checkpoint_every=every,
    )
    states = [policies[a].state_dict() for a in play.possible_agents]
    tensors = [v for state in states for k, v in sorted(state.items()) if torch.is_tensor(v)]
    result = {
        "history": {
            k: v for k, v in history.items() if k not in ("seconds", "final", "resumed_at")
        },
        "network": digest(play.network.parameters()),
        "agent": digest(tensors) + "".join(state["__rng__"] for state in states),
        "updates": play.network.num_updates,
        "resumed_at": history["resumed_at"],
    }
    with open(f"{out}/final.json", "w") as handle:
        json.dump(result, handle)


if __name__ == "__main__":
    main()
