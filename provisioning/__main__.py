"""`python -m provisioning`: see provisioning/cli.py and provisioning/README.md."""
import sys

from provisioning.cli import main

if __name__ == "__main__":
    sys.exit(main())
