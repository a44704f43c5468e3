"""``python -m worldstereo.cli``: the ``worldstereo`` command."""

import sys

from worldstereo.cli import main

sys.exit(main())
