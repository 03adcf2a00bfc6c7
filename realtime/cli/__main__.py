"""``python -m realtime.cli`` runs the ``mocap`` command line."""
import sys

from . import main

sys.exit(main())
