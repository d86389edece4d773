"""``python -m routerzoo`` = the ``routerzoo`` command."""

from routerzoo.cli import entry

entry()
