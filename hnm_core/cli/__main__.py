"""`python -m hnm_core.cli ...`: the `hnm` command without its console script."""

import sys

from .main import main

if __name__ == "__main__":  # importing the module (a check that every module imports) runs nothing
    sys.exit(main())
