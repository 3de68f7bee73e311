"""ganserve.training.models.text_encoder: the char-CNN-RNN text encoder takes any text."""

import torch

from ganserve import text
from ganserve.training.models.text_encoder import TextEncoder, TextEncoderConfig


def test_encoder_takes_any_text():
    torch.manual_seed(0)
    enc = TextEncoder(TextEncoderConfig(width=16, embedding_dim=8)).eval()
    long = "a red seven " * 40
    prompts = ["", "   ", long, "ünïcödé ✓ 漢字 emoji 🙂", "a red seven"]
    tokens = torch.from_numpy(text.encode_batch(prompts))
    assert tokens.shape == (5, 64) and (tokens[0] == 0).all() and (tokens[3] == 1).any()
    with torch.no_grad():
        e = enc(tokens)
    assert e.shape == (5, 8) and torch.isfinite(e).all()
    assert torch.allclose(e[0], e[1])                                       # blank = all padding
    cut = torch.from_numpy(text.encode_batch([long[:64]]))
    assert torch.equal(tokens[2:3], cut) and torch.allclose(enc(cut), e[2:3])  # cut to L by the tokenizer
    # padding is masked out: trailing padding does not change the embedding of the text before it
    with torch.no_grad():
        assert not torch.allclose(e[4], enc(torch.from_numpy(text.encode_batch(["a red sevens"])))[0])
