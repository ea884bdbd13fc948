"""``python -m nirbridge.cli ...``, the same as ``python -m nirbridge``."""

import sys

from nirbridge.cli import main

sys.exit(main())
