"""The MEND hypernetwork: normalise (u, δ), transform them with an identity-initialised low-rank MLP, and
recombine them into a pseudo-gradient (MEND §3, eq. 3–4).

One `GradientNet` serves every edited weight of one shape (e.g. the down-projections of the last three
layers); each of those weights is a *mode* with its own scale and shift in every layer of the net and
its own learned step size. Inputs are standardised per feature with running statistics kept per
edited weight (activation scales differ from layer to layer); the statistics are accumulated while
training and frozen afterwards. Before any statistic exists the normaliser is the identity, so a fresh
hypernetwork maps a gradient to exactly −edit_lr · ∇W.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class EditTarget:
    """One edited weight: parameter `name` of module `module` (layer `layer`), viewed as out × in."""

    name: str
    module: str
    layer: int
    d_in: int
    d_out: int
    transposed: bool  # stored as (in, out), like GPT-2's Conv1D

    @property
    def shape_key(self) -> str:
        return f"{self.d_in}x{self.d_out}"

    def to_dict(self) -> dict:
        return asdict(self)


class RunningNorm(nn.Module):
    """Per-feature standardisation (x − mean) / std with statistics merged batch by batch (Chan et al.).

    The identity until at least two rows have been seen. Statistics are kept in float64.
    """

    def __init__(self, dim: int, eps: float = 1e-8):
        super().__init__()
        self.eps = eps
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("m2", torch.zeros(dim, dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        x = x.detach().reshape(-1, x.shape[-1]).double()
        n = x.shape[0]
        if n == 0:
            return
        batch_mean = x.mean(0)
        batch_m2 = ((x - batch_mean) ** 2).sum(0)
        total = self.count + n
        diff = batch_mean - self.mean
        self.mean += diff * (n / total)
        self.m2 += batch_m2 + diff**2 * (self.count * n / total)
        self.count.fill_(total.item())

    @property
    def fitted(self) -> bool:
        return self.count.item() >= 2

    def std(self) -> torch.Tensor:
        return (self.m2 / (self.count - 1)).sqrt()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fitted:
            return x
        mean = self.mean.to(x.dtype)
        std = self.std().to(x.dtype)
        return (x - mean) / (std + self.eps)


class LowRankResidual(nn.Module):
    """x + act(scale_m ⊙ (U Vᵀ x + b) + shift_m), U initialised to zero so the layer starts as the identity."""

    def __init__(self, dim: int, rank: int, n_modes: int, relu: bool, generator: torch.Generator):
        super().__init__()
        self.u = nn.Parameter(torch.zeros(dim, rank))
        self.v = nn.Parameter(torch.randn(dim, rank, generator=generator) / math.sqrt(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.mode_scale = nn.Parameter(torch.ones(n_modes, dim))
        self.mode_shift = nn.Parameter(torch.zeros(n_modes, dim))
        self.relu = relu

    def forward(self, x: torch.Tensor, mode: int) -> torch.Tensor:
        pre = (x @ self.v) @ self.u.T + self.bias
        pre = pre * self.mode_scale[mode] + self.mode_shift[mode]
        return x + (torch.relu(pre) if self.relu else pre)


class GradientNet(nn.Module):
    """The per-shape MEND network on [ũ; δ̃]: `n_hidden` ReLU layers and one linear layer, all residual."""

    def __init__(
        self,
        d_in: int,
        d_out: int,
        rank: int,
        n_hidden: int,
        n_modes: int,
        generator: torch.Generator,
    ):
        super().__init__()
        self.d_in, self.d_out = d_in, d_out
        dim = d_in + d_out
        self.layers = nn.ModuleList(
            LowRankResidual(dim, min(rank, dim), n_modes, relu=i < n_hidden, generator=generator)
            for i in range(n_hidden + 1)
        )

    def forward(
        self, u: torch.Tensor, delta: torch.Tensor, mode: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([u, delta], dim=-1)
        for layer in self.layers:
            x = layer(x, mode)
        return x[..., : self.d_in], x[..., self.d_in :]


class MendHypernet(nn.Module):
    """Every edited weight's normalisers, the shared per-shape networks and the learned step sizes."""

    def __init__(
        self, targets: list[EditTarget], rank: int, n_hidden: int, edit_lr: float, seed: int = 0
    ):
        super().__init__()
        if not targets:
            raise ValueError("MEND needs at least one edited weight")
        self.targets = list(targets)
        generator = torch.Generator().manual_seed(seed)
        shapes: dict[str, list[int]] = {}
        for i, t in enumerate(self.targets):
            shapes.setdefault(t.shape_key, []).append(i)
        self._mode = {}
        for members in shapes.values():
            for m, i in enumerate(members):
                self._mode[i] = m
        self.nets = nn.ModuleDict(
            {
                key: GradientNet(
                    self.targets[members[0]].d_in,
                    self.targets[members[0]].d_out,
                    rank,
                    n_hidden,
                    len(members),
                    generator,
                )
                for key, members in shapes.items()
            }
        )
        self.u_norms = nn.ModuleList(RunningNorm(t.d_in) for t in self.targets)
        self.delta_norms = nn.ModuleList(RunningNorm(t.d_out) for t in self.targets)
        self.edit_lrs = nn.Parameter(torch.full((len(self.targets),), float(edit_lr)))

    def index(self, name: str) -> int:
        for i, t in enumerate(self.targets):
            if t.name == name:
                return i
        raise KeyError(f"the hypernetwork does not edit {name!r}")

    def update_statistics(self, i: int, u: torch.Tensor, delta: torch.Tensor) -> None:
        self.u_norms[i].update(u)
        self.delta_norms[i].update(delta)

    def transform(
        self, i: int, u: torch.Tensor, delta: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(ũ', δ̃') for weight i from rows of layer inputs u (N, d_in) and output gradients δ (N, d_out)."""
        t = self.targets[i]
        net = self.nets[t.shape_key]
        return net(self.u_norms[i](u), self.delta_norms[i](delta), self._mode[i])

    def delta(self, i: int, u: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """ΔW = −edit_lr_i · Σ_rows δ̃'ᵢ ũ'ᵢᵀ, in the parameter's own layout (rank ≤ number of rows)."""
        u_t, d_t = self.transform(i, u, delta)
        dw = -self.edit_lrs[i] * (d_t.T @ u_t)
        return dw.T if self.targets[i].transposed else dw

    def describe(self) -> list[dict]:
        return [t.to_dict() for t in self.targets]


__all__ = ["EditTarget", "RunningNorm", "LowRankResidual", "GradientNet", "MendHypernet"]
