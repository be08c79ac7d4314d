import sys

from mpsb_export.__main__ import main

sys.exit(main())
