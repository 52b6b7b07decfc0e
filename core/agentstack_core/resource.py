"""The names of the AgentStack custom resource: a contract with every manifest, the CRD
(``crds/agentstack.dev_agentstacks.yaml``), the chart's RBAC and kubectl users."""

from __future__ import annotations

GROUP = "agentstack.dev"
VERSION = "v1alpha1"
PLURAL = "agentstacks"
KIND = "AgentStack"
