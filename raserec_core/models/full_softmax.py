"""Cross-entropy over every item, computed in cache-sized blocks of items.

``F.cross_entropy(h @ table.T, target)`` makes one (B, N) logits matrix and then walks it five more
times (log-softmax, its backward, the one-hot gradient) at memory speed; with N = 12k items that was
half of a stage-1 training step on CPU, and the (B, 64) x (64, N) product itself ran at half speed
because its output does not fit in cache. Here the items are cut into blocks of about 2 MiB of logits:
each block's product, exponent and gradient stay in cache, the exponentials are computed once and
reused by the backward pass, and the result equals ``F.cross_entropy`` up to float rounding.
"""

from __future__ import annotations

import torch

_BLOCK_ELEMENTS = 1 << 19  # logits per block: 2 MiB of float32


class _BlockedSoftmaxCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h: torch.Tensor, table: torch.Tensor, target: torch.Tensor, block: int):
        starts = range(0, table.shape[0], block)
        logits = [h @ table[s : s + block].T for s in starts]
        m = torch.stack([blk.amax(1) for blk in logits]).amax(0)  # (B,) row maxima
        # From here ``logits`` holds exp(logit - m): computed once, kept for the backward pass.
        total = sum(blk.sub_(m[:, None]).exp_().sum(1) for blk in logits)
        target_logit = (h * table[target]).sum(1)
        loss = (m + total.log() - target_logit).mean()
        ctx.save_for_backward(h, table, target, total)
        ctx.blocks, ctx.block = logits, block
        return loss

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        h, table, target, total = ctx.saved_tensors
        B = h.shape[0]
        rows = torch.arange(B, device=h.device)
        inv_total = (grad / B) / total  # softmax scale and the mean's 1/B folded into one (B,) factor
        need_h, need_table = ctx.needs_input_grad[:2]
        grad_h = torch.zeros_like(h) if need_h else None
        grad_table = torch.empty_like(table) if need_table else None  # e.g. None with a frozen encoder
        for i, p in enumerate(ctx.blocks):
            s = i * ctx.block
            p.mul_(inv_total[:, None])  # softmax probabilities, scaled
            inside = (target >= s) & (target < s + p.shape[1])
            p[rows[inside], target[inside] - s] -= grad / B  # minus the one-hot target
            if need_h:
                grad_h.addmm_(p, table[s : s + p.shape[1]])
            if need_table:
                torch.mm(p.T, h, out=grad_table[s : s + p.shape[1]])
        ctx.blocks = None
        return grad_h, grad_table, None, None


def full_softmax_ce(h: torch.Tensor, table: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """mean over rows of -log softmax(h @ table.T)[target]; (B, D), (N, D), (B,) -> scalar.

    On CUDA the plain form: the GPU has no cache to fit, and a block loop would only add launches."""
    if h.is_cuda:
        return torch.nn.functional.cross_entropy(h @ table.T, target)
    block = max(256, _BLOCK_ELEMENTS // max(h.shape[0], 1))
    return _BlockedSoftmaxCE.apply(h, table, target, block)
