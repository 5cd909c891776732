"""`python -m hnm_core.cli ...`: the `hnm` command without its console script."""

import sys

from .main import main

sys.exit(main())
