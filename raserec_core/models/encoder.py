"""The encoder interface every backbone meets, its factory, and length-sorted batch encoding."""

from __future__ import annotations

from typing import Protocol

import torch


class Encoder(Protocol):
    n_items: int

    @property
    def item_table(self) -> torch.Tensor:  # (n_items, D)
        ...

    def __call__(self, seqs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:  # (B, L), (B,) -> (B, D)
        ...

    def sequence_output(self, seqs: torch.Tensor) -> torch.Tensor:  # (B, L) -> (B, L, D), causal
        ...


def build_encoder(backbone: str, n_items: int, max_len: int, model_cfg, n_extra_tokens: int = 0):
    """The encoder for ``model_cfg`` (a ``config.ModelConfig``)."""
    if backbone == "sasrec":
        from .sasrec import SASRec, SASRecConfig

        return SASRec(
            SASRecConfig(
                n_items=n_items,
                max_len=max_len,
                hidden_size=model_cfg.hidden_size,
                n_layers=model_cfg.n_layers,
                n_heads=model_cfg.n_heads,
                inner_size=model_cfg.inner_size,
                hidden_dropout=model_cfg.hidden_dropout,
                attn_dropout=model_cfg.attn_dropout,
                layer_norm_eps=model_cfg.layer_norm_eps,
                initializer_range=model_cfg.initializer_range,
                n_extra_tokens=n_extra_tokens,
            )
        )
    if backbone == "gru4rec":
        from .gru4rec import GRU4Rec, GRU4RecConfig

        return GRU4Rec(
            GRU4RecConfig(
                n_items=n_items,
                hidden_size=model_cfg.hidden_size,
                dropout=model_cfg.gru_dropout,
                n_extra_tokens=n_extra_tokens,
            )
        )
    raise ValueError(f"unknown backbone {backbone!r} (expected sasrec or gru4rec)")


def encode_by_length(encoder, seqs: torch.Tensor, lengths: torch.Tensor, n_chunks: int = 1) -> torch.Tensor:
    """Encode a right-padded batch, cut to its longest row, or in ``n_chunks`` length-sorted chunks each
    cut to its own longest row when that saves at least 40% of the padded positions.

    Every backbone here is causal, so each row's representation is unchanged; only padding work goes.
    Returns (B, D) in the input order.
    """
    B = seqs.shape[0]
    longest = int(lengths.max())
    if n_chunks <= 1 or B <= n_chunks:
        return encoder(seqs[:, :longest], lengths)
    order = torch.argsort(lengths)
    chunks = [idx for idx in torch.tensor_split(order, n_chunks) if len(idx)]
    widths = [int(lengths[idx[-1]]) for idx in chunks]  # sorted: the last row is the longest
    if sum(len(i) * w for i, w in zip(chunks, widths)) > 0.6 * B * longest:
        return encoder(seqs[:, :longest], lengths)
    h = torch.cat([encoder(seqs[idx, :w], lengths[idx]) for idx, w in zip(chunks, widths)])
    return torch.empty_like(h).index_copy_(0, order, h)


def encode_packed(
    encoder, windows: torch.Tensor, window_lengths: torch.Tensor, inverse: torch.Tensor, slot: torch.Tensor
) -> torch.Tensor:
    """(B, D) representations of B prefixes read off one causal pass over their windows
    (``data.packing``): row b is position ``slot[b]`` of window ``inverse[b]``."""
    out = encoder.sequence_output(windows[:, : int(window_lengths.max())])
    return out[inverse, slot]


@torch.no_grad()
def encode_instances(encoder, split, device, batch_size: int = 256) -> torch.Tensor:
    """(N, D) representations of every instance of ``split`` (an ``InstanceTensors``), on the CPU."""
    encoder.eval()
    # Sorted by length, each batch is nearly pad-free; small batches keep activations in cache.
    order = torch.argsort(split.lengths, stable=True)
    out = []
    for rows in order.split(batch_size):
        seqs, lengths = split.fetch(rows)
        out.append(encode_by_length(encoder, seqs.to(device), lengths.to(device)).float().cpu())
    h = torch.cat(out) if out else torch.zeros(0, encoder.item_table.shape[1])
    return torch.empty_like(h).index_copy_(0, order, h)
