import sys

from reson.cli import main

sys.exit(main())
