import sys

from defectscope.cli.main import main

sys.exit(main())
