"""``python -m worldstereo.eval [--quick] --out DIR``: the memory ablation and its report."""

import sys

from worldstereo.eval.ablation import main

sys.exit(main())
