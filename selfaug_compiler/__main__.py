import sys

from selfaug_compiler.cli import main

sys.exit(main())
