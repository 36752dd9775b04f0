"""Weight initialisation shared by the encoder and the RAM (RecBole's ``_init_weights``)."""

from __future__ import annotations

from torch import nn


def init_weights(module: nn.Module, std: float) -> None:
    """N(0, std) for Linear and Embedding weights (padding rows too: never updated, but scored), zero
    biases, LayerNorm weight 1 and bias 0. Use as ``model.apply(partial(init_weights, std=...))``."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        module.weight.data.normal_(0.0, std)
    if isinstance(module, nn.LayerNorm):
        module.weight.data.fill_(1.0)
        module.bias.data.zero_()
    if isinstance(module, nn.Linear) and module.bias is not None:
        module.bias.data.zero_()
