"""``python -m surgenet.train`` (and ``torchrun -m surgenet.train``) runs ``surgenet-train``."""

import sys

from .cli import main

sys.exit(main())
