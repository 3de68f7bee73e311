"""Data sets, held in memory as uint8 tensors, and the batch sampler.

- ``images``: MNIST (IDX files), image folders, scikit-learn's digits; pixel range conversions.
- ``sampler``: the seeded, resumable, sharded batch sampler of the training loop.
- ``sr``: super-resolution photos, (LR, HR) pairs and aligned crops.
- ``captions``: captioned images for text-to-image: colour MNIST and the CUB/Oxford folder layout.
"""
