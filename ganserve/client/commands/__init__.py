"""The command-line clients, ``ganserve generate`` and ``ganserve upscale``: each a module with a
``main(argv) -> int`` in ``ganserve/cli.py``'s table, built on :mod:`ganserve.client`."""
