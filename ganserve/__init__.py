"""ganserve: train GAN generators, export them for Triton, serve them over HTTP and gRPC.

This package holds only what both halves share, the ``ganserve`` command dispatcher and the
development tools (``ganserve.dev``, left out of the gateway image).
``training`` (PyTorch) and ``serve`` (no PyTorch) never import each other.
"""

__version__ = "0.1.0"
