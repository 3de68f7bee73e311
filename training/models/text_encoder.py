"""The text encoder of the text-to-image models: a char-CNN-RNN (Reed et al. 2016, "Learning Deep
Representations of Fine-Grained Visual Descriptions") over ``ganserve.text`` char-v1 ids, and the
small image encoder it is pre-trained against (``ganserve.training.families.gan_int_cls``).

Architecture (``tokens`` int64 [B, L] -> ``embedding`` float [B, E]):
character embedding -> two temporal convolutions (ReLU, max-pool x2 each) -> a GRU over the L/4
pooled steps -> mean of the GRU states over the steps that hold text (padding masked out) -> linear.
Any text works: unknown characters have their own id, long prompts are cut to L by the tokenizer, and
an all-padding input gives the projection of a zero vector (finite; the mask count is clamped to 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ganserve import text
from ganserve.errors import UsageError
from ganserve.training.models.layers import check_shape


@dataclass(frozen=True)
class TextEncoderConfig:
    vocab_size: int = text.VOCAB_SIZE   # char-v1: padding, unknown and the alphabet
    max_tokens: int = text.DEFAULT_LENGTH  # L: the tokenizer's fixed length
    char_dim: int = 32                  # learned character embedding (the paper: one-hot)
    width: int = 128                    # conv channels and GRU state
    embedding_dim: int = 128            # E: the output


class TextEncoder(nn.Module):
    """Char-CNN-RNN: tokens int64 [B, L] -> embedding [B, E]."""

    def __init__(self, cfg: TextEncoderConfig) -> None:
        super().__init__()
        if cfg.max_tokens % 4:
            raise UsageError(f"max_tokens must be a multiple of 4 (two x2 poolings), got {cfg.max_tokens}")
        self.cfg = cfg
        self.chars = nn.Embedding(cfg.vocab_size, cfg.char_dim, padding_idx=text.PAD)
        # [B, char_dim, L] -> [B, width, L/2] -> [B, width, L/4]
        self.conv = nn.Sequential(
            nn.Conv1d(cfg.char_dim, cfg.width, 5, padding=2), nn.ReLU(True), nn.MaxPool1d(2),
            nn.Conv1d(cfg.width, cfg.width, 5, padding=2), nn.ReLU(True), nn.MaxPool1d(2),
        )
        self.rnn = nn.GRU(cfg.width, cfg.width, batch_first=True)
        self.out = nn.Linear(cfg.width, cfg.embedding_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        check_shape(tokens, (None, self.cfg.max_tokens), "TextEncoder tokens")
        tokens = tokens.clamp(0, self.cfg.vocab_size - 1)  # ids past the vocabulary read as the last id
        h = self.conv(self.chars(tokens).transpose(1, 2))              # [B, width, L/4]
        states, _ = self.rnn(h.transpose(1, 2))                        # [B, L/4, width]
        # a pooled step holds text if any of its 4 characters is not padding
        mask = F.max_pool1d((tokens != text.PAD).float()[:, None], 4)  # [B, 1, L/4]
        mask = mask.transpose(1, 2)                                    # [B, L/4, 1]
        mean = (states * mask).sum(1) / mask.sum(1).clamp(min=1.0)     # [B, width]; all padding -> 0
        return self.out(mean)                                          # [B, E]


class ImageEncoder(nn.Module):
    """phi(v): image [B, 3, S, S] in [-1, 1] -> [B, E], for the joint embedding only (not exported)."""

    def __init__(self, embedding_dim: int, *, width: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, width, 4, 2, 1), nn.LeakyReLU(0.2, True),               # S/2
            nn.Conv2d(width, width * 2, 4, 2, 1), nn.LeakyReLU(0.2, True),       # S/4
            nn.Conv2d(width * 2, width * 2, 3, 1, 1), nn.LeakyReLU(0.2, True),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width * 2, embedding_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
