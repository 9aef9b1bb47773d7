import sys

from devstack.chaos.run import main

sys.exit(main())
