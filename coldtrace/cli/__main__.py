"""`python -m coldtrace.cli`: what the `coldtrace` script runs."""

import sys

from coldtrace.cli import main

if __name__ == "__main__":
    sys.exit(main())
