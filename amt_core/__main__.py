"""`python -m amt_core ...` is `amt-core ...` (torchrun uses this form)."""

import sys

from amt_core.cli import main

sys.exit(main())
