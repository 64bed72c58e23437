"""``python -m agent`` is ``kassa-agent``."""

import sys

from agent.cli import main

sys.exit(main())
