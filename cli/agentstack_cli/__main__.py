"""``python -m agentstack_cli`` is the ``agentstack`` command."""

import sys

from agentstack_cli.cli import main

sys.exit(main())
