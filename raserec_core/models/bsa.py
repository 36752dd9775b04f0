"""BSARec-style block: self-attention mixed with a fixed Fourier low-pass filter over the sequence.

BSARec (Shin et al., AAAI 2024, arXiv 2312.10325) argues that self-attention alone lacks an inductive
bias toward sequential patterns and smooths away high frequencies, and adds a fixed Fourier one: keep the
lowest ``c // 2 + 1`` frequencies of the sequence (its DFT over the ``max_len`` window), rescale the rest,
the high-frequency part, by a learned beta^2 per unit, and mix that with attention:

    dsp = LN(x + Dropout(low(x) + beta^2 (x - low(x))))
    x  <- FFN(alpha * dsp + (1 - alpha) * attention(x))      (post-LN attention and FFN as SASRec's)

BSARec filters each training prefix as a whole window (every position sees the prefix's last items),
which would rule out answering all of a user's prefixes from one pass (``data.packing``). Here the
filter is causal: position t is the low-pass filter's output at the last position of the window that
ends at t, with the positions before the user's first item set to zero. A low-pass projection of
length W is circulant with impulse response h = irfft(mask, W), so that output is the causal
convolution sum_{d < W} h[d] x[t - d]: position len-1 of a prefix is exactly what the FFT filter
gives at the end of the zero-padded window, and nothing reads the right padding.

``filter_scope: window`` is BSARec's own filter: the whole window of each prefix, so in a lower block
every position also reads the prefix's later items (a circular convolution over ``max_len``, the user's
positions kept and the padding zeroed; a circulant filter does not care where in the window the items
sit). Its representations hold only per prefix: no packing, ``SASRec.forward`` with each prefix's length.
"""

from __future__ import annotations

import torch
from torch import nn

from .dropout import Dropout


def lowpass_impulse(window: int, cutoff: int) -> torch.Tensor:
    """(window,) impulse response of the orthonormal rfft -> keep bins [0, cutoff // 2 + 1) -> irfft
    projection over ``window`` positions (BSARec's ``c`` is ``cutoff``)."""
    keep = torch.zeros(window // 2 + 1)
    keep[: cutoff // 2 + 1] = 1.0
    return torch.fft.irfft(keep.to(torch.complex64), n=window)


def causal_lowpass(x: torch.Tensor, impulse: torch.Tensor) -> torch.Tensor:
    """(B, L, D) -> (B, L, D): y_t = sum_{0 <= d < min(t + 1, W)} impulse[d] x_{t-d}, one (L, L) Toeplitz matmul."""
    L, W = x.shape[1], impulse.shape[0]
    lag = torch.arange(L, device=x.device)[:, None] - torch.arange(L, device=x.device)[None, :]  # (L, L): t - s
    inside = (lag >= 0) & (lag < W)
    toeplitz = torch.where(inside, impulse[lag.clamp(0, W - 1)], torch.zeros((), device=x.device)).to(x.dtype)
    return torch.einsum("ts,bsd->btd", toeplitz, x)


def window_lowpass(x: torch.Tensor, impulse: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(B, L, D) -> (B, L, D): the FFT low-pass of each row's whole window, y_t = sum_s impulse[(t - s) mod W]
    x_s over its valid positions (``valid`` (B, L) bool; L <= W), one (L, L) circulant matmul."""
    L, W = x.shape[1], impulse.shape[0]
    lag = (torch.arange(L, device=x.device)[:, None] - torch.arange(L, device=x.device)[None, :]) % W
    return torch.einsum("ts,bsd->btd", impulse[lag].to(x.dtype), x * valid[..., None].to(x.dtype))


class LowPassFilter(nn.Module):
    """LN(x + Dropout(low + beta^2 (x - low))), beta learned per unit (BSARec's ``sqrt_beta``); ``low`` the
    causal filter, or with ``scope="window"`` the whole window's (``valid`` then required)."""

    def __init__(self, hidden_size: int, window: int, cutoff: int, dropout: float, eps: float, scope: str = "causal"):
        super().__init__()
        if scope not in ("causal", "window"):
            raise ValueError(f"unknown filter scope {scope!r} (expected causal or window)")
        self.scope = scope
        self.register_buffer("impulse", lowpass_impulse(window, cutoff), persistent=False)  # derived from the config
        self.sqrt_beta = nn.Parameter(torch.randn(1, 1, hidden_size))
        self.dropout = Dropout(dropout)
        self.norm = nn.LayerNorm(hidden_size, eps=eps)

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        if self.scope == "causal":
            low = causal_lowpass(x, self.impulse)
        elif valid is None:
            raise ValueError("the whole-window filter needs each row's valid positions (SASRec.forward with lengths)")
        else:
            low = window_lowpass(x, self.impulse, valid)
        return self.norm(x + self.dropout(low + self.sqrt_beta**2 * (x - low)))


class BSABlock(nn.Module):
    """alpha * LowPassFilter(x) + (1 - alpha) * SelfAttention(x), then SASRec's feed-forward."""

    def __init__(self, attention: nn.Module, feed_forward: nn.Module, lowpass: LowPassFilter, alpha: float):
        super().__init__()
        self.attn, self.ffn, self.filter, self.alpha = attention, feed_forward, lowpass, alpha

    @property
    def causal(self) -> bool:
        return self.filter.scope == "causal"

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        return self.ffn(self.alpha * self.filter(x, valid) + (1.0 - self.alpha) * self.attn(x))
