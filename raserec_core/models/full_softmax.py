"""Cross-entropy over every item, computed in cache-sized blocks of items.

``F.cross_entropy(h @ table.T, target)`` makes one (B, N) logits matrix and then walks it five more
times (log-softmax, its backward, the one-hot gradient) at memory speed; with N = 12k items that was
half of a stage-1 training step on CPU, and the (B, 64) x (64, N) product itself ran at half speed
because its output does not fit in cache. Here the items are cut into blocks of about 2 MiB of logits:
each block's product, exponent and gradient stay in cache, the exponentials are computed once and
reused by the backward pass, and the result equals ``F.cross_entropy`` up to float rounding.

The blocked part is the per-row log-sum-exp; the target's logit (one row of the table per query) and
the offset for the query's own items (``models.seen``: a few dozen items per query) are small terms on
top of it, left to autograd; the same two parts give the seen items' mass that calibrates that offset.
"""

from __future__ import annotations

import torch

from .seen import first_occurrences

_BLOCK_ELEMENTS = 1 << 19  # logits per block: 2 MiB of float32


class _BlockedLogSumExp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h: torch.Tensor, table: torch.Tensor, block: int):
        starts = range(0, table.shape[0], block)
        logits = [h @ table[s : s + block].T for s in starts]
        m = torch.stack([blk.amax(1) for blk in logits]).amax(0)  # (B,) row maxima
        # From here ``logits`` holds exp(logit - m): computed once, kept for the backward pass.
        total = sum(blk.sub_(m[:, None]).exp_().sum(1) for blk in logits)
        ctx.save_for_backward(h, table, total)
        ctx.blocks, ctx.block = logits, block
        return m + total.log()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        h, table, total = ctx.saved_tensors
        scale = grad / total  # (B,): d lse / d logit is the softmax, exp(logit - m) / total
        need_h, need_table = ctx.needs_input_grad[:2]
        grad_h = torch.zeros_like(h) if need_h else None
        grad_table = torch.empty_like(table) if need_table else None  # e.g. None with a frozen encoder
        for i, p in enumerate(ctx.blocks):
            s = i * ctx.block
            p.mul_(scale[:, None])
            if need_h:
                grad_h.addmm_(p, table[s : s + p.shape[1]])
            if need_table:
                torch.mm(p.T, h, out=grad_table[s : s + p.shape[1]])
        ctx.blocks = None
        return grad_h, grad_table, None


def logsumexp_scores(h: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """(B, D), (N, D) -> (B,) log-sum-exp of each row of h @ table.T, with gradients.

    On CUDA the plain form: the GPU has no cache to fit, and a block loop would only add launches."""
    if h.is_cuda:
        return torch.logsumexp(h @ table.T, dim=1)
    block = max(256, _BLOCK_ELEMENTS // max(h.shape[0], 1))
    return _BlockedLogSumExp.apply(h, table, block)


def full_softmax_ce(
    h: torch.Tensor, table: torch.Tensor, target: torch.Tensor,
    history: torch.Tensor | None = None, seen_offset: torch.Tensor | None = None,
) -> torch.Tensor:
    """mean over rows of -log softmax(h @ table.T)[target]; (B, D), (N, D), (B,) -> scalar.

    With ``history`` (B, L) item indices (0 = padding) and a scalar ``seen_offset``: the softmax of the
    scores with the offset added to each row's history items (``models.seen.offset_seen``). Adding b to
    the items S of a row turns its log-sum-exp into lse + log(1 + (e^b - 1) p_S), p_S the softmax mass
    of S, so only the history's own logits are computed beside the blocked pass."""
    lse = logsumexp_scores(h, table)
    target_logit = (h * table[target]).sum(1)
    if seen_offset is None:
        return (lse - target_logit).mean()
    history = history.to(h.device)
    target_seen = ((history == target[:, None]) & (history > 0)).any(1)  # padding is no item the user has
    lse = lse + torch.log1p(torch.expm1(seen_offset) * seen_mass(h, table, history, lse))
    return (lse - target_logit - seen_offset * target_seen).mean()


def seen_mass(h: torch.Tensor, table: torch.Tensor, history: torch.Tensor, lse: torch.Tensor) -> torch.Tensor:
    """(B,) softmax mass of each row's history items (each once, padding never) under h @ table.T, given
    the rows' log-sum-exp ``lse``: only the history's own logits are computed."""
    own = first_occurrences(history)
    history_logits = torch.einsum("bd,bld->bl", h, table[history])
    return ((history_logits - lse[:, None]).exp() * own).sum(1)


@torch.no_grad()
def seen_log_odds(h: torch.Tensor, table: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
    """(B,) log(p / (1 - p)), p the softmax mass of each row's history items over the whole table (the
    classes of the training cross-entropy): what ``models.seen.calibrate_offset`` fits the offset to."""
    p = seen_mass(h, table, history.to(h.device), logsumexp_scores(h, table)).double()
    return p.log() - torch.log1p(-p)
