import sys

from tasks.drift import main

sys.exit(main())
