"""``python -m ssl_bench`` (also what ``torchrun -m ssl_bench`` launches)."""

import sys

from ssl_bench.cli import main

sys.exit(main())
