"""`python -m tamer` (and `torchrun -m tamer`) run the CLI."""
import sys

from .cli import main

sys.exit(main())
