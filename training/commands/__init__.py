"""The training side of the ``ganserve`` command line: one module per subcommand, each with a
``main(argv) -> int``. The ``ganserve`` entry point (``ganserve/cli.py``) registers them from its table
and is the only importer of this package; this is the one floor of ``training`` that knows argparse
(through :class:`ganserve.usage.UsageParser`, which turns usage errors into one-line messages).
"""
