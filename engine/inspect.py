"""``python -m engine.inspect``: kept as the public entry point; the tool lives in :mod:`engine.tools.inspect`."""
import sys

from .tools.inspect import inspect_store, main, verify_shard  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
