"""The Redis layer: every command the processes send about a stack, in one package.

One module per concern, each script a ``.lua`` file beside the module that calls it,
called through one typed wrapper with named keys and named arguments
(:mod:`.script`):

- :mod:`.tick` — the tick path: lease, agents' context, the fenced step commit (domain
  operations in, Redis commands out), the once-only finish of a tick;
- :mod:`.publishing` — the operator publishes a stack's spec and deletes the stack;
- :mod:`.inputs` — inputs people send, numbered and rate-limited;
- :mod:`.search` — the archive's lexical index (kept by the scripts that append to the
  archive, trimmed with it) and BM25 search over it;
- :mod:`.approvals` — tool calls waiting for a person: decide, claim, read;
- :mod:`.reader` — read-only views for the API;
- :mod:`.limits` — the fleet-wide LLM call slots;
- :mod:`.ledger` — a namespace's budgets, held before each LLM call and settled after;
- :mod:`.errors` — what fenced writes refuse.

The tick protocol's streams (lanes, results, wake-ups) stay in
:mod:`agentstack_core.protocol`: plain stream commands, no script.
"""
