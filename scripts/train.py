#!/usr/bin/env python3
"""Train from a JSON config without installing the package: the same as ``hashwfa-train``.

    python scripts/train.py configs/v1.json [--set key.path=value ...] [--out DIR] ...
"""

import os
import sys

# Run from a checkout: make the repository's package importable.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from hashwfa.cli.train import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
