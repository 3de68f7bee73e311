"""ganserve.training.models.gan_int_cls: the text-conditional generator (frozen encoder inside) and the
matching-aware discriminator."""

import pytest
import torch

from ganserve import text
from ganserve.training.families import get_family
from ganserve.training.presets import preset


def test_shapes():
    family = get_family(preset("text2img-colour-mnist"))
    cfg = family.cfg.model
    G, D = family.build_generator(), family.build_discriminator()
    z, tokens = torch.randn(3, cfg.latent_dim), torch.from_numpy(text.encode_batch(["a red 7", "", "x" * 99]))
    img = G(z, tokens)
    assert img.shape == (3, 3, 28, 28) and img.abs().max() <= 1
    assert torch.allclose(img, G(z, G.embed(tokens)))   # tokens or embeddings
    assert D(img, G.embed(tokens)).shape == (3,)
    with pytest.raises(ValueError, match="embedding"):
        D(img, torch.randn(3, cfg.embedding_dim + 1))
    assert not any(p.requires_grad for p in G.encoder.parameters())  # frozen
