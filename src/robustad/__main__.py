"""`python -m robustad ...` is the same as the `robustad` command."""

import sys

from robustad.cli import main

sys.exit(main())
