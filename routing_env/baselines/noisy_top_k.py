"""Noisy top-k gated mixtures of experts with k-annealing and balancing losses (``002``).

``002`` section 2.1 (after Shazeer et al., 2017) gates ``n`` experts per layer with

    y = sum_i G(x)_i E_i(x),   G(x) = Softmax(KeepTopK(H(x), k)),
    H(x)_i = (x W_g)_i + StandardNormal() * Softplus((x W_noise)_i),

``KeepTopK`` setting all but the ``k`` largest entries to ``-inf``. The noise is a training
device: in evaluation ``H(x) = x W_g``. Section 2.2: "Diverse routing models can be extended to
the multi-task setting by simply concatenating a task embedding to the input of the routing
model"; the gate here sees ``x = concat(activation, onehot(task))``.

k-annealing (``002`` section 2.1): "instead of using the same value of k for every layer, k is
annealed downwards over the layers of the routing model. That is, initial layers will have
high k (more weight sharing) and layers closer to the classification layer have smaller k";
section 4.2: "k is annealed from 7 to 2 over the layers" (7 experts: dense first). The default
schedule, ``"layers"``, goes linearly from ``num_modules`` at the first layer to ``k`` at the
last (10 modules, k = 2, 3 layers: 10, 6, 2). ``"training"`` anneals over time instead: every
layer starts dense and reaches ``k`` linearly after ``anneal_fraction`` of the training budget;
``"none"`` uses ``k`` everywhere.

Balancing (``002`` section 2.1, defined in Shazeer et al. 2017): the importance loss
``w_importance * CV(Importance(X))^2`` with ``Importance(X) = sum_x G(x)`` over the batch, and
the load loss ``w_load * CV(Load(X))^2`` with the smooth load estimator
``Load(X)_i = sum_x Phi(((x W_g)_i - kth_excluding(H(x), k, i)) / Softplus((x W_noise)_i))``,
``Phi`` the standard normal CDF and ``kth_excluding(v, k, i)`` the k-th largest entry of ``v``
other than ``v_i``: the probability that expert ``i`` stays in the top k when its own noise is
drawn again. ``CV`` is the coefficient of variation, standard deviation over mean, with the
population variance (as Shazeer et al.'s implementation). ``002`` section 4.2 anneals the
balancing weight "from 0.1 to 0 over the course of training"; so does ``balance_annealing``
(default on). The gating weights start at zero (Shazeer et al.: "no signal and some noise").

Experts (``002`` section 2.2): homogeneous (every expert is the routed network's module,
``Linear + ReLU``) or diverse, cycling through fully connected analogues of ``002``'s mix of
convolutions of several sizes, pairs of convolutions and the identity: see
:data:`EXPERT_KINDS`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from routing_env.baselines.base import (
    BaselineModel,
    BaselineOutput,
    ModelShapes,
    check_positive,
    layer_dims,
)
from routing_env.baselines.layers import LinearBank, initialise_parameters, make_trunk, zero_linear

K_ANNEALING = ("layers", "training", "none")

#: Diverse expert kinds: ``"fc"`` one linear layer (the routed module), ``"fc-fc"`` two linear
#: layers of ``hidden_dim``, ``"wide"`` two with a ``2 * hidden_dim`` middle, ``"narrow"`` two
#: with a ``hidden_dim // 4`` bottleneck, ``"identity"`` the skip connection (only where the
#: layer's input and output sizes match, never for the logits). Each ends in ReLU except at the
#: last (logit) layer.
EXPERT_KINDS = ("fc", "fc-fc", "wide", "narrow", "identity")


def annealed_k(
    num_modules: int,
    k: int,
    *,
    layer: int,
    num_layers: int,
    progress: float = 1.0,
    annealing: str = "layers",
    anneal_fraction: float = 0.5,
) -> int:
    """The number of experts layer ``layer`` keeps under a k-annealing schedule.

    Args:
        num_modules: experts per layer (``k`` starts there: dense).
        k: the target number of experts.
        layer: index of the layer, ``0 .. num_layers - 1``.
        num_layers: number of gated layers.
        progress: fraction of the training budget done (used by ``"training"`` only).
        annealing: ``"layers"`` (``002``: ``num_modules`` at the first layer down to ``k`` at the
            last, linearly, rounded), ``"training"`` (every layer: ``num_modules`` at progress 0
            down to ``k`` at ``anneal_fraction``, linearly, rounded) or ``"none"`` (``k``).
        anneal_fraction: fraction of the budget the ``"training"`` schedule takes.
    """
    if annealing == "none":
        return k
    if annealing == "layers":
        fraction = layer / (num_layers - 1) if num_layers > 1 else 1.0
    elif annealing == "training":
        fraction = min(1.0, max(0.0, progress) / anneal_fraction)
    else:
        raise ValueError(f"unknown k annealing {annealing!r}; expected one of {K_ANNEALING}")
    return int(round(num_modules - (num_modules - k) * fraction))


def cv_squared(values: torch.Tensor) -> torch.Tensor:
    """Squared coefficient of variation of a vector (population variance over squared mean);
    0 for a single value or a constant vector."""
    if values.numel() < 2:
        return values.new_zeros(())
    return values.var(unbiased=False) / (values.mean() ** 2 + 1e-10)


def importance(gates: torch.Tensor) -> torch.Tensor:
    """``Importance(X)``: each expert's gate values summed over the batch ``(batch, n) -> (n,)``."""
    return gates.sum(dim=0)


def smooth_load(
    clean_logits: torch.Tensor, noisy_logits: torch.Tensor, noise_std: torch.Tensor, k: int
) -> torch.Tensor:
    """Shazeer et al.'s smooth estimator of ``Load(X)``, differentiable in the gate weights.

    Sums over the batch ``P(x, i) = Phi((clean_i - kth_excluding(noisy, k, i)) / noise_std_i)``.
    The k-th largest noisy logit other than ``i`` is the (k+1)-th largest overall when ``i``
    itself is in the top k, else the k-th largest. With ``k`` equal to the number of experts
    every expert is always kept: the load is the batch size.

    Args:
        clean_logits: ``x W_g``, shape ``(batch, n)``.
        noisy_logits: ``H(x)``, shape ``(batch, n)``.
        noise_std: ``Softplus(x W_noise)``, shape ``(batch, n)``, positive.
        k: experts kept per sample.
    """
    count = clean_logits.shape[1]
    if k >= count:
        return clean_logits.new_full((count,), float(clean_logits.shape[0]))
    top = noisy_logits.topk(k + 1, dim=1).values
    threshold_if_in, threshold_if_out = top[:, k : k + 1], top[:, k - 1 : k]
    in_top_k = noisy_logits > threshold_if_in
    threshold = torch.where(in_top_k, threshold_if_in, threshold_if_out)
    # Softplus can underflow to 0 for very negative inputs; keep the division finite.
    z = (clean_logits - threshold) / noise_std.clamp_min(1e-9)
    return (0.5 * (1.0 + torch.erf(z / math.sqrt(2.0)))).sum(dim=0)


def keep_top_k_softmax(logits: torch.Tensor, k: int) -> torch.Tensor:
    """``Softmax(KeepTopK(logits, k))``: exactly ``k`` non-zero weights per row, summing to 1."""
    if k >= logits.shape[1]:
        return torch.softmax(logits, dim=1)
    values, indices = logits.topk(k, dim=1)
    return torch.zeros_like(logits).scatter(1, indices, torch.softmax(values, dim=1))


class NoisyTopKGate(nn.Module):
    """The noisy top-k gate of ``002`` section 2.1 for one layer of ``num_modules`` experts.

    Args:
        in_dim: size of the gate's input (activation and task one-hot).
        num_modules: number of experts.
    """

    def __init__(self, in_dim: int, num_modules: int) -> None:
        super().__init__()
        self.num_modules = num_modules
        self.w_gate = zero_linear(in_dim, num_modules, bias=False)
        self.w_noise = zero_linear(in_dim, num_modules, bias=False)

    def forward(
        self, features: torch.Tensor, k: int, noisy: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gate values ``(batch, num_modules)`` and the smooth load ``(num_modules,)``.

        Args:
            features: gate input, shape ``(batch, in_dim)``.
            k: experts kept per sample.
            noisy: add the Gaussian noise (training). Without noise the load is the number of
                samples each expert got (not differentiable, for statistics only).
        """
        clean = self.w_gate(features)
        if not noisy:
            gates = keep_top_k_softmax(clean, k)
            return gates, (gates > 0).sum(dim=0).to(clean.dtype)
        noise_std = F.softplus(self.w_noise(features))
        noisy_logits = clean + torch.randn_like(clean) * noise_std
        gates = keep_top_k_softmax(noisy_logits, k)
        return gates, smooth_load(clean, noisy_logits, noise_std, k)


def make_expert(kind: str, in_dim: int, out_dim: int, hidden_dim: int, last: bool) -> nn.Module:
    """One expert of kind ``kind`` (see :data:`EXPERT_KINDS`) mapping ``in_dim -> out_dim``;
    ReLU after every linear layer except the last one of a logit (``last``) expert."""
    widths = {
        "fc": [],
        "fc-fc": [hidden_dim],
        "wide": [2 * hidden_dim],
        "narrow": [max(1, hidden_dim // 4)],
    }
    if kind == "identity":
        if in_dim != out_dim or last:
            raise ValueError("an identity expert needs equal input and output sizes (not logits)")
        return nn.Identity()
    if kind not in widths:
        raise ValueError(f"unknown expert kind {kind!r}; expected one of {EXPERT_KINDS}")
    sizes = [in_dim, *widths[kind], out_dim]
    layers: list[nn.Module] = []
    for index in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[index], sizes[index + 1]))
        if not (last and index == len(sizes) - 2):
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def diverse_kinds(
    kinds: Sequence[str], num_modules: int, in_dim: int, out_dim: int, last: bool
) -> list[str]:
    """The kinds of a layer's ``num_modules`` experts: ``kinds`` cycled, leaving out
    ``"identity"`` where the layer cannot have it (sizes differ, or logits)."""
    allowed = [kind for kind in kinds if kind != "identity" or (in_dim == out_dim and not last)]
    if not allowed:
        raise ValueError(f"no expert kind of {list(kinds)} fits a {in_dim} -> {out_dim} layer")
    return [allowed[index % len(allowed)] for index in range(num_modules)]


class NoisyTopKNetwork(BaselineModel):
    """The routed network's layers as noisy top-k gated mixtures of experts (``002``).

    Layer ``d`` computes ``h_(d+1) = sum_i G(x)_i E_i(h_d)`` with the gate of
    :class:`NoisyTopKGate` on ``x = concat(h_d, onehot(task))`` keeping ``k_d`` experts, ``k_d``
    from :func:`annealed_k`. All experts are computed and weighted by the sparse gate; experts
    outside the top k get weight exactly 0, hence no output share and no gradient, as in the
    sparse computation. ``BaselineOutput.auxiliary_loss`` holds the balancing losses of the
    pass (training mode only; see the module docstring).

    Args:
        shapes: input shape, number of tasks and number of outputs.
        hidden_dim: size of the activations between layers.
        max_depth: number of gated layers.
        num_modules: experts per layer.
        k: experts kept per sample at the end of the k-annealing (``002``: 2).
        k_annealing: ``"layers"`` (default, ``002``), ``"training"`` or ``"none"``; see
            :func:`annealed_k`.
        anneal_fraction: fraction of the training budget the ``"training"`` schedule takes.
        experts: ``"homogeneous"`` (every expert ``Linear + ReLU``, the routed module),
            ``"diverse"`` (cycling through :data:`EXPERT_KINDS`) or a sequence of kinds to cycle.
        w_importance: weight of the importance loss (Shazeer et al. and ``002``: 0.1).
        w_load: weight of the load loss (Shazeer et al. and ``002``: 0.1).
        balance_annealing: scale both weights by ``1 - progress`` (``002`` section 4.2).
        seed: seed of the experts' initialisation (the routed network's scheme).

    Raises:
        ValueError: if a size is not a positive integer, ``k > num_modules``, a weight is
            negative, or a schedule or expert kind is unknown.
    """

    gated = True

    def __init__(
        self,
        shapes: ModelShapes,
        *,
        hidden_dim: int = 64,
        max_depth: int = 3,
        num_modules: int = 10,
        k: int = 2,
        k_annealing: str = "layers",
        anneal_fraction: float = 0.5,
        experts: str | Sequence[str] = "homogeneous",
        w_importance: float = 0.1,
        w_load: float = 0.1,
        balance_annealing: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(shapes)
        check_positive(hidden_dim=hidden_dim, max_depth=max_depth, num_modules=num_modules, k=k)
        if k > num_modules:
            raise ValueError(f"k={k} exceeds num_modules={num_modules}")
        if k_annealing not in K_ANNEALING:
            raise ValueError(f"unknown k_annealing {k_annealing!r}; expected one of {K_ANNEALING}")
        if not 0.0 < anneal_fraction <= 1.0:
            raise ValueError(f"anneal_fraction must lie in (0, 1], got {anneal_fraction!r}")
        if w_importance < 0 or w_load < 0:
            raise ValueError(
                f"w_importance and w_load must be non-negative, got {w_importance}, {w_load}"
            )
        self.hidden_dim, self.max_depth, self.num_modules = hidden_dim, max_depth, num_modules
        self.k, self.k_annealing, self.anneal_fraction = k, k_annealing, anneal_fraction
        self.w_importance, self.w_load = float(w_importance), float(w_load)
        self.balance_annealing = bool(balance_annealing)
        self.progress = 0.0
        # Default initialisations draw from the global RNG: fork it, the real values come from
        # `seed` below.
        with torch.random.fork_rng(devices=[]):
            self.trunk = make_trunk(self.input_shape, hidden_dim)
            dims = layer_dims(self.trunk.output_dim, hidden_dim, self.num_outputs, max_depth)
            self.gates = nn.ModuleList(
                NoisyTopKGate(dims[d] + self.num_tasks, num_modules) for d in range(max_depth)
            )
            if experts == "homogeneous":
                self.expert_kinds = [["fc"] * num_modules for _ in range(max_depth)]
                self.experts: nn.ModuleList = nn.ModuleList(
                    LinearBank(num_modules, dims[d], dims[d + 1]) for d in range(max_depth)
                )
            else:
                kinds = EXPERT_KINDS if experts == "diverse" else tuple(experts)
                self.expert_kinds = [
                    diverse_kinds(kinds, num_modules, dims[d], dims[d + 1], d == max_depth - 1)
                    for d in range(max_depth)
                ]
                self.experts = nn.ModuleList(
                    nn.ModuleList(
                        make_expert(kind, dims[d], dims[d + 1], hidden_dim, d == max_depth - 1)
                        for kind in self.expert_kinds[d]
                    )
                    for d in range(max_depth)
                )
        initialise_parameters(self, seed)

    def set_progress(self, fraction: float) -> None:
        """Set the fraction of the training budget done (k schedule, balance annealing)."""
        self.progress = min(1.0, max(0.0, float(fraction)))

    def layer_k(self, depth: int) -> int:
        """Experts kept at layer ``depth`` now (see :func:`annealed_k`)."""
        return annealed_k(
            self.num_modules,
            self.k,
            layer=depth,
            num_layers=self.max_depth,
            progress=self.progress,
            annealing=self.k_annealing,
            anneal_fraction=self.anneal_fraction,
        )

    def balance_weights(self) -> tuple[float, float]:
        """The importance and load loss weights now (annealed to 0 with ``balance_annealing``)."""
        scale = 1.0 - self.progress if self.balance_annealing else 1.0
        return self.w_importance * scale, self.w_load * scale

    def _expert_outputs(self, depth: int, h: torch.Tensor) -> torch.Tensor:
        experts = self.experts[depth]
        if isinstance(experts, LinearBank):
            outputs = experts.all(h)
            return torch.relu(outputs) if depth < self.max_depth - 1 else outputs
        return torch.stack([expert(h) for expert in experts], dim=1)

    def compute(self, x: torch.Tensor, task: torch.Tensor) -> BaselineOutput:
        h = self.trunk(x)
        one_hot = F.one_hot(task, self.num_tasks).to(h.dtype)
        w_importance, w_load = self.balance_weights()
        auxiliary = h.new_zeros(())
        gates = []
        for depth in range(self.max_depth):
            weights, load = self.gates[depth](
                torch.cat([h, one_hot], dim=1), self.layer_k(depth), noisy=self.training
            )
            if self.training:
                auxiliary = auxiliary + w_importance * cv_squared(importance(weights))
                auxiliary = auxiliary + w_load * cv_squared(load)
            h = torch.einsum("bm,bmo->bo", weights, self._expert_outputs(depth, h))
            gates.append(weights)
        return BaselineOutput(h, gates, auxiliary)
