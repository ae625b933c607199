"""`python -m amt_studio`: the same as `amt-studio`."""

import sys

from amt_studio.app import main

sys.exit(main())
