"""``python -m routerzoo`` = the ``routerzoo`` command."""

import sys

from routerzoo.cli import main

sys.exit(main())
