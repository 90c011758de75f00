"""``python -m bridge.cli``: the ``lambda-bridge`` command."""

import sys

from bridge.cli.main import main

sys.exit(main())
