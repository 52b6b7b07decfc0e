"""``python -m agentstack_operator`` is the ``agentstack`` command."""

import sys

from agentstack_operator.cli import main

sys.exit(main())
