"""The names of the custom resources: a contract with every manifest, the CRDs
(``crds/agentstack.dev_agentstacks.yaml``, ``crds/agentstack.dev_agentbudgets.yaml``),
the chart's RBAC and kubectl users."""

from __future__ import annotations

GROUP = "agentstack.dev"
VERSION = "v1alpha1"
PLURAL = "agentstacks"
KIND = "AgentStack"

BUDGET_PLURAL = "agentbudgets"
BUDGET_KIND = "AgentBudget"
"""A namespace's budget (:mod:`agentstack_core.namespacebudget`), in the same group and
version."""
