"""`python -m reservoir` is the `reservoir` command."""

import sys

from reservoir.cli import main

sys.exit(main())
