"""Entry script of the frozen app: ``rigfit`` (and ``rigfit --rigfit-worker`` for the model process).

PyInstaller runs one script as ``__main__``; this one only hands over to :func:`app.__main__.main`, so
the frozen app parses its command line exactly as ``python -m app`` does.
"""

import sys

from app.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
