"""Wrappers that present the routing environments through other libraries' interfaces.

One wrapper per module, each imported on its own (it needs its library, an optional
dependency; ``import routing_env`` imports none of them):

* :mod:`routing_env.wrappers.sb3_vec_env`: the batched routing env as a Stable-Baselines3
  ``VecEnv`` (:class:`~routing_env.wrappers.sb3_vec_env.SB3VecEnv`,
  :func:`~routing_env.wrappers.sb3_vec_env.make_vec_env`).
"""
