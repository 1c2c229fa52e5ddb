"""Does the budget's trade-off favour fine codes anywhere? Per-cell reconstruction gain vs cost.

Used for docs/results/pvqae.md. For a trained PVQAE and some training tiles, decode every cell
at each level in turn, and compare, per coarse cell, the training loss (L1 + L2, as the model
trains) gained by a finer level with what the budget charges for it (λ_b · (u_{p,k} −
u_{p,coarsest}), u as the training step computes it, from the model's own richness measure):

    python scripts/routing_break_even.py runs/pvqae_features_long_mtsd [--tiles 64] [--seed 0]

The tiles are drawn at random (seeded) from the training split: the first tiles in path order
come from one stretch of MTSD's captures and are routed unlike the rest (the first 64 of one
run were all middle where a random 64 were a third finest).

Prints, per level, the mean gain and how many cells would gain more than they pay at the
run's final λ_b, the correlation of the gain with H_p and with the log of the patch's variance
(the amount of detail, for comparison), and the router's choices: its share per level, the
median margin between its two highest logits, and how its probability of each level ranks
with the patch's log variance and with H_p.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from defectscope.data.dataset import AnomalyDataset, build_records
from defectscope.engine.checkpoint import load_checkpoint
from defectscope.models.pvqae.budget import budget_weight, patch_entropy
from defectscope.models.pvqae.config import EntropyRichness
from defectscope.models.pvqae.routing import one_hot_levels


def cell_loss(target: torch.Tensor, output: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """L1 + L2 per position, averaged over channels and over each coarse cell: (B, h, w)."""
    diff = output - target
    return F.adaptive_avg_pool2d((diff.abs() + diff.pow(2)).mean(dim=1, keepdim=True), grid)[:, 0]


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--tiles", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0, help="which random tiles")
    args = parser.parse_args()
    if args.tiles < 1:
        parser.error(f"--tiles must be at least 1, got {args.tiles}")
    checkpoint = load_checkpoint(args.run / "checkpoints" / "final")
    model, cfg = checkpoint.model.eval(), checkpoint.model.config
    records = build_records(checkpoint.config.data).train
    records = random.Random(args.seed).sample(records, min(args.tiles, len(records)))
    data = AnomalyDataset(records, {n: i for i, n in enumerate(checkpoint.class_names)},
                          checkpoint.config.data.image_size, None)
    images = torch.stack([data[i].image for i in range(len(data))])
    target = model.target(images)
    features = model.encoder(target)
    levels = model.num_levels
    losses = []
    for k in range(levels):
        scores = one_hot_levels(torch.full((len(images), *model.coarse_grid), k), levels)
        losses.append(cell_loss(target, model.reconstruct(features, scores).output, model.coarse_grid))
    # H_p as the model's budget measures it, or with the paper's settings for a model charging by detail
    measure = cfg.budget_richness if isinstance(cfg.budget_richness, EntropyRichness) else EntropyRichness()
    entropy = patch_entropy(images, model.coarse_grid, measure.dwt_levels, measure.include_approximation)
    # another richness measure for comparison: the amount of detail, the log of the grey
    # patch's variance (with the full Haar transform, its detail energy over the pixel count)
    grey = F.pixel_unshuffle(images.mean(dim=1, keepdim=True), images.shape[-1] // model.coarse_grid[-1])
    log_variance = grey.var(dim=1).clamp_min(1e-8).log()
    costs = model.budget_costs(images)
    lambda_b = budget_weight(1.0, cfg.lambda_max, cfg.budget_schedule)
    routing = model.hard_routing(features, images)
    chosen = routing.levels
    coarsest = levels - 1
    print(f"{len(images)} training tiles, {entropy.numel()} cells; final λ_b {lambda_b:g}")
    print("loss per cell if decoded at level k (0 = finest):", [round(float(x.mean()), 4) for x in losses])
    for k in range(coarsest):
        gain = losses[coarsest] - losses[k]
        charge = lambda_b * (costs[:, k] - costs[:, coarsest])
        rho = torch.corrcoef(torch.stack([gain.flatten(), entropy.flatten()]))[0, 1]
        rho_var = torch.corrcoef(torch.stack([gain.flatten(), log_variance.flatten()]))[0, 1]
        low, high = float(gain.quantile(0.05)), float(gain.quantile(0.95))
        break_even = float((gain / (charge / lambda_b)).median())
        print(f"level {k} vs coarsest: gain mean {float(gain.mean()):.4f} (5-95%: {low:.4f}-{high:.4f}), "
              f"charge mean {float(charge.mean()):.4f}, "
              f"cells that gain more than they pay: {float((gain > charge).float().mean()):.2f}, "
              f"corr(gain, H_p) {float(rho):.2f}, corr(gain, log patch variance) {float(rho_var):.2f}, "
              f"break-even λ_b median {break_even:.5f}")
    print("router's choice, share per level:", [round(float((chosen == k).float().mean()), 2) for k in range(levels)])
    top2 = routing.logits.topk(2, dim=1).values
    probability = routing.logits.softmax(dim=1)
    print(f"router's logit margin (top 1 − top 2), median: {float((top2[:, 0] - top2[:, 1]).median()):.2f}")
    for k in range(levels):
        p_k = probability[:, k].flatten()
        print(f"  Spearman of P(level {k}) with log patch variance {spearmanr(p_k, log_variance.flatten())[0]:.2f}, "
              f"with H_p {spearmanr(p_k, entropy.flatten())[0]:.2f}")
    for k in range(levels):
        picked = chosen == k
        if picked.any():
            print(f"  cells routed to level {k}: mean H_p {float(entropy[picked].mean()):.3f}")


if __name__ == "__main__":
    main()
