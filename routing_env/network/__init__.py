"""The routed network, split along its seams.

* :mod:`routing_env.network.model`: :class:`RoutedNetwork`, the trunk, routed layers, readout,
  action masks, the forward pass and the per-sample NumPy path;
* :mod:`routing_env.network.kernel`: the grouped kernel, banks of same-shaped linears stored as
  stacked weights, the layouts of a batch grouped by module, the batched products and their
  backward pass;
* :mod:`routing_env.network.rows`: the per-row kernel, a small batch through its modules row
  by row, and its update by hand; :mod:`routing_env.network.compiled`: that update compiled
  for the CPU;
* :mod:`routing_env.network.graph`: :class:`RouteGraph`, the record of a routing pass that the
  module update starts from;
* :mod:`routing_env.network.trainer`: the module trainer (``001`` Algorithm 2 step 3), with the
  plain-autograd :func:`reference_update` at its top.
"""

from routing_env.network.graph import RouteGraph
from routing_env.network.model import ROUTINGS, RoutedNetwork, draw_default_init
from routing_env.network.trainer import OptimizerFactory, reference_update

__all__ = [
    "ROUTINGS",
    "OptimizerFactory",
    "RouteGraph",
    "RoutedNetwork",
    "draw_default_init",
    "reference_update",
]
