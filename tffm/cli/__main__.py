"""`python -m tffm.cli`: the same as the `tffm` command."""

import sys

from tffm.cli import main

sys.exit(main())
