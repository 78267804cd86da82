import sys

from center.ledger.intake import main

sys.exit(main())
