"""ganserve: train GAN generators, export them for Triton, serve them over HTTP and gRPC.

This package holds only what both halves share, the ``ganserve`` command dispatcher and the
development tools (``ganserve.dev``, left out of the gateway image).

The two halves live in the folders ``training/`` and ``serve/`` and install as ``ganserve.training``
(PyTorch) and ``ganserve.serve`` (no PyTorch); they never import each other, and this package's own
modules import neither.
"""

__version__ = "0.1.0"
