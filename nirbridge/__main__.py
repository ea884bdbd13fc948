"""``python -m nirbridge ...``: the ``nirbridge`` command (:func:`nirbridge.cli.main`)."""

import sys

from nirbridge.cli import main

if __name__ == "__main__":
    sys.exit(main())
