"""One multivariate Gaussian per feature-grid position, fitted in one streamed pass (PaDiM Sec. 3.2)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


class PositionGaussians(nn.Module):
    """Mean μ_ij and inverse covariance (Σ_ij + εI)⁻¹ for every position of a (P, d) grid.

    Sums are accumulated in float64 around the first batch's mean (shifted data keeps the
    one-pass covariance accurate), so only O(P · d²) memory is held, never all the features.
    """

    def __init__(self, positions: int, dim: int, regularisation: float = 0.01) -> None:
        super().__init__()
        self.regularisation = regularisation
        self.register_buffer("mean", torch.zeros(positions, dim))
        self.register_buffer("inv_cov", torch.eye(dim).repeat(positions, 1, 1))
        # n, the samples behind μ and Σ: with it, more samples update both exactly (`absorb`); 0: unknown
        self.register_buffer("samples", torch.zeros((), dtype=torch.long))
        self._reset()

    def _load_from_state_dict(self, state_dict: dict, prefix: str, local_metadata: dict, strict: bool,
                              missing_keys: list[str], *args: Any) -> None:
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, *args)
        if prefix + "samples" in missing_keys:  # saved before n was kept: it loads, but cannot absorb
            missing_keys.remove(prefix + "samples")
            self.samples.zero_()

    def _reset(self) -> None:
        self._shift: Tensor | None = None
        self._sum: Tensor | None = None
        self._outer: Tensor | None = None
        self.count = 0

    def add(self, x: Tensor) -> None:
        """x (B, P, d): one batch of per-position features."""
        if self._shift is None:
            self._shift = x.double().mean(dim=0)
            self._sum = torch.zeros_like(self._shift)
            self._outer = torch.zeros(*self._shift.shape, self._shift.shape[1], dtype=torch.float64, device=x.device)
        centred = (x.double() - self._shift).transpose(0, 1)  # (P, B, d)
        self._sum += centred.sum(dim=1)
        self._outer += centred.transpose(1, 2) @ centred
        self.count += x.shape[0]

    def finish(self) -> None:
        if self.count < 2 or self._sum is None or self._outer is None or self._shift is None:
            raise RuntimeError(f"padim: a covariance needs at least 2 training images, got {self.count}")
        n = self.count
        m = self._sum / n  # mean of the shifted data
        cov = (self._outer - n * m[:, :, None] * m[:, None, :]) / (n - 1)
        cov += self.regularisation * torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
        self.mean = (self._shift + m).float()
        self.inv_cov = torch.linalg.inv(cov).float()
        self.samples.fill_(n)
        self._reset()

    @torch.no_grad()
    def absorb(self, x: Tensor) -> None:
        """x (B, P, d): more samples into μ and Σ, as if they had been in the fit (up to float32 storage).

        Σ comes back from the stored inverse, (Σ + εI)⁻¹ inverted minus εI, and the two groups'
        scatter matrices are merged (Chan et al. 1979): S = S_old + S_new + n·k/(n + k) · δδᵀ,
        δ the difference of the two means.
        """
        n, k = int(self.samples), x.shape[0]
        if n < 2:
            raise RuntimeError("padim: these Gaussians do not record how many samples they hold (saved before "
                               "that was kept), so new ones cannot be weighed against them; fit the model again")
        eye = torch.eye(x.shape[-1], dtype=torch.float64, device=x.device)
        cov = torch.linalg.inv(self.inv_cov.double()) - self.regularisation * eye  # (P, d, d), divided by n − 1
        mean = self.mean.double()
        new = x.double().transpose(0, 1)  # (P, k, d)
        new_mean = new.mean(dim=1)
        centred = new - new_mean[:, None]
        delta = new_mean - mean
        between = (n * k / (n + k)) * delta[:, :, None] * delta[:, None, :]
        scatter = (n - 1) * cov + centred.transpose(1, 2) @ centred + between
        cov = scatter / (n + k - 1)
        cov = (cov + cov.transpose(1, 2)) / 2 + self.regularisation * eye
        self.mean = (mean + delta * (k / (n + k))).float()
        self.inv_cov = torch.linalg.inv(cov).float()
        self.samples.fill_(n + k)

    def mahalanobis(self, x: Tensor) -> Tensor:
        """x (B, P, d) → (B, P): sqrt((x − μ)ᵀ Σ⁻¹ (x − μ)) per position."""
        delta = (x - self.mean).transpose(0, 1)  # (P, B, d)
        d2 = ((delta @ self.inv_cov) * delta).sum(dim=-1)  # (P, B)
        return d2.clamp_min(0).sqrt().transpose(0, 1)
