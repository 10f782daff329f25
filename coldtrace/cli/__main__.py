"""`python -m coldtrace.cli`: what the `coldtrace` script runs."""

import sys

from coldtrace.cli import main

sys.exit(main())
