"""`python -m reservoir` is the `reservoir` command."""

import sys

from reservoir.client.cli import main

sys.exit(main())
