"""`python3 ccq_doctor.py ...`: the deployed zipapp runs this."""

import sys

from ccq_doctor.cli import main

sys.exit(main())
