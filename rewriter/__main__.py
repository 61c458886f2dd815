"""``python -m rewriter``: the command line (also what ``torchrun -m rewriter`` runs)."""

import sys

from .cli import main

sys.exit(main())
