import sys

from torchwm.cli import main

sys.exit(main())
