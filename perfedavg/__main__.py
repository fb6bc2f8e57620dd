import sys

from perfedavg.cli import main

sys.exit(main())
