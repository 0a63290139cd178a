"""`python -m recorder --channel-fd FD`: the recorder process (recorder/process.py, recorder/service.py)."""

import sys

from recorder.process import main

if __name__ == "__main__":
    sys.exit(main())
