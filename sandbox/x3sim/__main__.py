"""`python -m sandbox.x3sim`: run the simulator (see the package docstring for its controls)."""

import sys

from sandbox.x3sim import main

sys.exit(main())
