"""``python -m flagstaff.cli``: the command line (as ``python -m flagstaff``)."""

from flagstaff.cli import run

run()
