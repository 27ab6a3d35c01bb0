"""``python -m dlprep`` (also what ``torchrun -m dlprep`` runs)."""

import sys

from .cli import main

sys.exit(main())
