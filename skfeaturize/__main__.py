"""``python -m skfeaturize`` runs the ``skfeaturize`` command."""

import sys

from .cli import main

sys.exit(main())
