"""``python -m firmware_sim`` is ``kassa-sim``."""

import sys

from firmware_sim.cli import main

sys.exit(main())
