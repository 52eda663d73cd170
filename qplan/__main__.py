"""``python -m qplan``: the qplan command line (see ``qplan.cli``)."""

from .cli import run

run()
