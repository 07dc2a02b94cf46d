"""``python -m dermfuse_xai explain --ckpt PATH ...`` (see :mod:`dermfuse_xai.cli`)."""
import sys

from dermfuse_xai.cli import main

if __name__ == "__main__":
    sys.exit(main())
