"""`python -m recorder --channel-fd FD`: the recorder process (see recorder/service.py)."""

import sys

from recorder.service import main

if __name__ == "__main__":
    sys.exit(main())
