"""payg's entry script, as the design names it: `python app.py --config FILE` runs the controller.

The composition root is payg/bootstrap.py; the installed `payg` command calls the same `main`.
"""

import sys

from payg.bootstrap import main

if __name__ == "__main__":
    sys.exit(main())
