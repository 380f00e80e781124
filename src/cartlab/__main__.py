"""``python -m cartlab`` runs the command line."""

from cartlab.cli import app

app(prog_name="cartlab")
