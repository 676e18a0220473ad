"""``python -m pytest_opro.reporting``: see :mod:`pytest_opro.reporting.cli`."""

import sys

from pytest_opro.reporting.cli import main

sys.exit(main())
