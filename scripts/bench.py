#!/usr/bin/env python
"""The seed report's table on the synthetic plage: same as ``hashwfa-bench``."""

import sys

from hashwfa.cli.bench import main

if __name__ == "__main__":
    sys.exit(main())
