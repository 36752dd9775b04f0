"""The encoder factory (every backbone has ``n_items``, ``item_table``, ``__call__(seqs, lengths)`` and
``sequence_output(seqs)``) and length-sorted batch encoding."""

from __future__ import annotations

import torch


def build_encoder(backbone: str, n_items: int, max_len: int, model_cfg, n_extra_tokens: int = 0):
    """The encoder for ``model_cfg`` (a ``config.ModelConfig``), its config derived from it by field name."""
    from .configs import from_section

    if backbone == "sasrec":
        from .sasrec import SASRec, SASRecConfig

        return SASRec(from_section(SASRecConfig, model_cfg, n_items=n_items, max_len=max_len,
                                   n_extra_tokens=n_extra_tokens, inner_size=model_cfg.ffn_size))
    if backbone == "gru4rec":
        from .gru4rec import GRU4Rec, GRU4RecConfig

        # GRU4Rec's n_layers stays its own (1): the section's n_layers is the transformer's.
        return GRU4Rec(GRU4RecConfig(n_items=n_items, hidden_size=model_cfg.hidden_size, dropout=model_cfg.gru_dropout,
                                     n_extra_tokens=n_extra_tokens))
    raise ValueError(f"unknown backbone {backbone!r} (expected sasrec or gru4rec)")


# What one more encoder pass costs beyond its padded positions (kernel launches, masks, the backward of
# each op), in positions: measured on 2 CPU cores with SASRec 2x2x64, where a pass over 16 rows cost
# about as much as 150-250 further padded positions. It only sets where splitting stops paying.
GROUP_COST = 192


def length_groups(lengths: torch.Tensor, max_groups: int, group_cost: float = GROUP_COST) -> list[torch.Tensor]:
    """Row indices cut into at most ``max_groups`` length-sorted groups, chosen to minimise the padded
    positions (rows × the group's longest length) plus ``group_cost`` per group.

    Exact dynamic programme over the distinct lengths (at most max_len of them), vectorised per group count.
    """
    order = torch.argsort(lengths, stable=True)
    values, counts = torch.unique_consecutive(lengths[order].cpu(), return_counts=True)
    d = len(values)
    rows_before = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])  # (d+1,)
    start, end = torch.arange(d + 1)[:, None], torch.arange(d + 1)[None, :]
    # cost[a, b]: one group holding distinct lengths a..b-1, padded to the longest, values[b-1]
    width = values[(end - 1).clamp(min=0)].double()
    cost = (rows_before[end] - rows_before[start]).double() * width + group_cost
    cost = torch.where(start < end, cost, torch.full_like(cost, float("inf")))
    best = torch.full((d + 1,), float("inf"), dtype=torch.double)
    best[0] = 0.0
    choices, totals = [], []
    for _ in range(max(max_groups, 1)):
        best, arg = (best[:, None] + cost).min(0)  # exactly one more group
        choices.append(arg)
        totals.append(float(best[d]))
    n_groups = min(range(len(totals)), key=totals.__getitem__) + 1
    cuts = [d]
    for arg in reversed(choices[:n_groups]):
        cuts.append(int(arg[cuts[-1]]))
    bounds = rows_before[cuts[::-1]].tolist()
    return [order[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:])]


def encode_by_length(
    encoder, seqs: torch.Tensor, lengths: torch.Tensor, max_groups: int = 1, group_cost: float = GROUP_COST
) -> torch.Tensor:
    """Encode a right-padded batch in at most ``max_groups`` length-sorted groups, each cut to its own
    longest row (``length_groups`` picks the cut that saves the most work).

    Every backbone here is causal, so each row's representation is unchanged; only padding work goes.
    Returns (B, D) in the input order.
    """
    groups = length_groups(lengths, max_groups, group_cost) if max_groups > 1 else []
    if len(groups) <= 1:
        return encoder(seqs[:, : int(lengths.max())], lengths)
    order = torch.cat(groups)
    h = torch.cat([encoder(seqs[idx, : int(lengths[idx[-1]])], lengths[idx]) for idx in groups])
    return torch.empty_like(h).index_copy_(0, order.to(h.device), h)


def encode_views(
    encoder, views: list[tuple[torch.Tensor, torch.Tensor]], max_groups: int = 1
) -> list[torch.Tensor]:
    """Encode several right-padded batches ``(seqs, lengths)`` as one: one (B_i, D) tensor per view.

    Rows never interact in an encoder (no batch statistics; dropout draws a mask per element), so this
    is the same as encoding each view alone, in fewer, larger passes: the views of a contrastive step
    share their length groups.
    """
    width = max(int(lengths.max()) for _, lengths in views)
    seqs = torch.cat([torch.nn.functional.pad(s[:, :width], (0, width - s[:, :width].shape[1])) for s, _ in views])
    h = encode_by_length(encoder, seqs, torch.cat([lengths for _, lengths in views]), max_groups)
    return list(h.split([len(lengths) for _, lengths in views]))


def encode_packed(
    encoder, windows: torch.Tensor, inverse: torch.Tensor, slot: torch.Tensor
) -> torch.Tensor:
    """(B, D) representations of B prefixes read off one causal pass over their windows
    (``data.packing``): row b is position ``slot[b]`` of window ``inverse[b]``. ``windows`` is encoded at
    the width it has (cut to its longest window, or fixed for a CUDA graph): no host synchronisation."""
    out = encoder.sequence_output(windows)  # (W, L, D)
    return out.flatten(0, 1).index_select(0, inverse * windows.shape[1] + slot)


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
