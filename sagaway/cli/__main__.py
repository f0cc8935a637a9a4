import sys

from sagaway.cli import main

sys.exit(main())
