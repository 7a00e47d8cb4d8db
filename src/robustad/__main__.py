"""`python -m robustad ...` is the same as the `robustad` command."""

from robustad.cli import entry

entry()
