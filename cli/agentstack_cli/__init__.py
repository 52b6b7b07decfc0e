"""The command lines: ``agentstack`` (:mod:`.cli`: the operator, the runner and the API
as subcommands, plus those installed distributions add) and ``kubectl agentstack``
(:mod:`.kubectl_plugin`).

The one package that may import every process: the operator, the runner and the API
import neither each other nor this (import-linter contracts in ``pyproject.toml``).
"""
