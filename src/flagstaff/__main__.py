"""``python -m flagstaff``: the command line."""

from flagstaff.cli import run

run()
