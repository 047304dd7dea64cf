"""`python -m hf_mtl.cli ...` is `hf-mtl ...`."""

import sys

from .main import main


sys.exit(main())
