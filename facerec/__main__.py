"""``python -m facerec``: the ``facerec`` command line."""

import sys

from facerec.cli import main

sys.exit(main())
