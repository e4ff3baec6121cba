"""Dead-code revival (collapse paper §5): unused codes move onto the residuals their level
quantizes worst, with their optimiser state reset."""

from __future__ import annotations

import torch

from hrqtok.quantize.residual import ResidualDetails, ResidualQuantizer


@torch.no_grad()
def revive_dead_codes(quantizer: ResidualQuantizer, details: ResidualDetails,
                      optimizer) -> list[int]:
    """Move each level's unused codes onto the residuals that level quantizes worst
    (``details`` from quantizer.details over the training set). Returns counts per level."""
    revived = []
    for level, size in enumerate(quantizer.sizes):
        counts = torch.bincount(details.codes[:, level], minlength=size)
        dead = torch.nonzero(counts == 0).squeeze(-1)
        if len(dead):
            worst = details.errors[level].argsort(descending=True)
            take = worst[: len(dead)].repeat(len(dead) // len(worst) + 1)[: len(dead)]
            quantizer.revive(level, dead, details.residuals[level][take])
            # stale Adam moments would push a revived code straight off its new position
            for parameter in quantizer.level_parameters(level):
                for value in optimizer.state.get(parameter, {}).values():
                    if torch.is_tensor(value) and value.shape == parameter.shape:
                        value[dead] = 0
        revived.append(len(dead))
    return revived
