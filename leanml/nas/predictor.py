"""Accuracy predictor: an MLP on the one-hot architecture encoding (OFA / the lab's 3 x 400 layers).

Trained on measured (architecture, validation accuracy) pairs with a seeded
held-out split; the fit reports held-out mean absolute error (accuracy
points), RMSE and rank correlations (Kendall's tau, Spearman's rho). Targets
are standardized for training; the model predicts accuracy as a fraction.

Example:
    >>> import random
    >>> from leanml.nas.space import SpaceConfig
    >>> space = SpaceConfig()
    >>> archs = [space.sample(random.Random(s)) for s in range(40)]
    >>> pairs = [(a, 0.8 + 0.001 * a.resolution) for a in archs]
    >>> fit = train_predictor(pairs, space, PredictorConfig(epochs=5), progress=False)
    >>> 0.0 <= fit.metrics["mae_points"]
    True
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from leanml.artifact import load_artifact, save_artifact
from leanml.config import Config, require
from leanml.errors import LeanmlError
from leanml.nas.space import Arch, SpaceConfig
from leanml.nas.stats import kendall_tau, spearman_rho
from leanml.progress import track

KIND = "nas_predictor"


@dataclass
class PredictorConfig(Config):
    """MLP shape (hidden width x layers), Adam schedule, held-out fraction, seed."""

    hidden: int = 400
    layers: int = 3
    epochs: int = 300
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 128
    holdout: float = 0.2
    seed: int = 0

    def validate(self) -> None:
        require(self.hidden >= 1 and self.layers >= 1, "predictor needs hidden >= 1 and layers >= 1")
        require(self.epochs >= 1 and self.lr > 0 and self.batch_size >= 1, "need epochs >= 1, lr > 0, batch >= 1")
        require(0.0 <= self.holdout < 1.0, f"holdout must be in [0, 1), got {self.holdout}")


class AccuracyPredictor(nn.Module):
    """``layers`` x (Linear → ReLU) of width ``hidden``, then a linear output; de-standardized to accuracy."""

    mean: torch.Tensor
    scale: torch.Tensor

    def __init__(self, in_dim: int, hidden: int = 400, layers: int = 3) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        width = in_dim
        for _ in range(layers):
            mods += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        mods.append(nn.Linear(width, 1, bias=False))
        self.mlp = nn.Sequential(*mods)
        self.register_buffer("mean", torch.zeros(()))
        self.register_buffer("scale", torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (N, encoding) one-hot → (N,) predicted accuracy (fraction)
        return self.mlp(x).squeeze(1) * self.scale + self.mean


@dataclass
class AccuracyModel:
    """A trained predictor with its space: accuracy of architectures, and the fit's held-out metrics."""

    predictor: AccuracyPredictor
    space: SpaceConfig
    config: PredictorConfig
    metrics: dict[str, float] = field(default_factory=dict)
    holdout: list[tuple[float, float]] = field(default_factory=list)  # (measured, predicted)
    holdout_index: list[int] = field(default_factory=list)  # positions of the held-out pairs in the training data

    @torch.no_grad()
    def predict(self, archs: list[Arch]) -> list[float]:
        """Predicted accuracy (fraction) of each architecture (checked against the space)."""
        if not archs:
            return []
        x = torch.tensor([self.space.encode(a) for a in archs])  # (N, encoding)
        return [float(v) for v in self.predictor.eval()(x)]

    def save(self, path: str | Path) -> None:
        """Save weights and the space, config, metrics and held-out pairs (the one artifact format)."""
        meta = {"space": self.space.to_dict(), "predictor_config": self.config.to_dict(), "metrics": self.metrics,
                "holdout": [list(p) for p in self.holdout], "holdout_index": self.holdout_index}  # fmt: skip
        save_artifact(path, dict(self.predictor.state_dict()), meta, kind=KIND)

    @classmethod
    def load(cls, path: str | Path) -> AccuracyModel:
        """Load a predictor saved by :meth:`save`."""
        tensors, meta = load_artifact(path, kind=KIND)
        space = SpaceConfig.from_dict(meta["space"])
        cfg = PredictorConfig.from_dict(meta["predictor_config"])
        net = AccuracyPredictor(space.encoding_size(), cfg.hidden, cfg.layers)
        try:
            net.load_state_dict(tensors, strict=True)
        except RuntimeError as e:
            raise LeanmlError(f"predictor weights in {path} do not match its space and config",
                              "re-train it with `leanml nas predictor`") from e  # fmt: skip
        holdout = [(a, b) for a, b in meta["holdout"]]
        return cls(net.eval(), space, cfg, dict(meta["metrics"]), holdout, list(meta["holdout_index"]))


def fit_metrics(measured: list[float], predicted: list[float]) -> dict[str, float]:
    """MAE and RMSE in accuracy points (x100), Kendall's tau and Spearman's rho.

    Example:
        >>> fit_metrics([0.9, 0.8], [0.91, 0.79])["mae_points"]
        1.0000000000000009
    """
    n = max(len(measured), 1)
    err = [p - m for m, p in zip(measured, predicted, strict=True)]
    return {"mae_points": 100 * sum(abs(e) for e in err) / n, "rmse_points": 100 * (sum(e * e for e in err) / n) ** 0.5,
            "kendall_tau": kendall_tau(measured, predicted) if len(err) > 1 else 0.0,
            "spearman_rho": spearman_rho(measured, predicted) if len(err) > 1 else 0.0}  # fmt: skip


def train_predictor(
    pairs: list[tuple[Arch, float]], space: SpaceConfig, cfg: PredictorConfig, progress: bool = True
) -> AccuracyModel:
    """Fit the MLP on a seeded split of ``pairs``; metrics are on the held-out part (or the training part if none)."""
    require(len(pairs) >= 2, f"the predictor needs at least 2 measured architectures, got {len(pairs)}",
            "measure more with `leanml nas sample`")  # fmt: skip
    order = list(range(len(pairs)))
    random.Random(cfg.seed).shuffle(order)
    n_hold = min(round(cfg.holdout * len(pairs)), len(pairs) - 1)
    hold, fit = order[:n_hold], order[n_hold:]
    x = torch.tensor([space.encode(a) for a, _ in pairs])  # (N, encoding)
    y = torch.tensor([acc for _, acc in pairs], dtype=torch.float32)  # (N,)
    torch.manual_seed(cfg.seed)
    net = AccuracyPredictor(x.shape[1], cfg.hidden, cfg.layers)
    net.mean.fill_(float(y[fit].mean()))
    net.scale.fill_(float(y[fit].std()) if len(fit) > 1 and float(y[fit].std()) > 0 else 1.0)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.epochs)
    gen = torch.Generator().manual_seed(cfg.seed)
    fit_idx = torch.tensor(fit)
    net.train()
    for _ in track(range(cfg.epochs), cfg.epochs, "training the accuracy predictor", progress):
        for batch in torch.split(fit_idx[torch.randperm(len(fit), generator=gen)], cfg.batch_size):
            target = (y[batch] - net.mean) / net.scale  # standardized (B,)
            loss = F.mse_loss(net.mlp(x[batch]).squeeze(1), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
        sched.step()
    net.eval()
    check = hold if hold else fit
    with torch.no_grad():
        predicted = net(x[torch.tensor(check)]).tolist()
    measured = [float(y[i]) for i in check]
    metrics = fit_metrics(measured, predicted)
    metrics.update({"n_train": float(len(fit)), "n_holdout": float(len(hold))})
    return AccuracyModel(net, space, cfg, metrics, list(zip(measured, predicted, strict=True)), list(check))


def predictor_metrics_table(model: AccuracyModel) -> list[list[str]]:
    """Rows ``[metric, value]`` for reports.

    Example:
        >>> rows = predictor_metrics_table(AccuracyModel(AccuracyPredictor(3), SpaceConfig(), PredictorConfig(),
        ...                                              {"mae_points": 0.4}))
        >>> rows[0]
        ['mae_points', '0.4']
    """
    return [[k, f"{v:.4g}"] for k, v in model.metrics.items()]
