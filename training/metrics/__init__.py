"""Offline quality metrics, one module per model kind (``ganserve evaluate`` picks it by the model's kind):

- ``unconditional``: FID, KID and mode coverage of MNIST-style generators, with reference points;
- ``super_resolution``: PSNR/SSIM on the Y channel against bicubic, and tiled vs whole-image output;
- ``text_conditional``: attribute accuracy on held-out prompts and FID, for text-to-image models.

Shared parts: ``distances`` (FID, KID between feature sets) and ``classifiers`` (the sha256-pinned
measuring classifiers whose feature spaces those distances use, and the one trainer they share).
"""
