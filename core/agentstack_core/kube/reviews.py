"""TokenReview and SubjectAccessReview: the bodies sent and the answers' typed views.

Both are ``create`` calls whose answer is the review with its ``status`` filled in by
the API server; nothing is stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agentstack_core.kube.manifests import Manifest, mapping, text

AUTHENTICATION = "apis/authentication.k8s.io/v1"
AUTHORIZATION = "apis/authorization.k8s.io/v1"
TOKEN_REVIEWS = f"{AUTHENTICATION}/tokenreviews"
SUBJECT_ACCESS_REVIEWS = f"{AUTHORIZATION}/subjectaccessreviews"
SELF_SUBJECT_ACCESS_REVIEWS = f"{AUTHORIZATION}/selfsubjectaccessreviews"


def token_review(token: str) -> dict[str, Any]:
    """The TokenReview that asks who ``token`` belongs to."""
    return {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": token},
    }


@dataclass(frozen=True)
class ReviewedUser:
    """Whom a TokenReview found (``None`` of :meth:`of` when it found no one)."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()

    @classmethod
    def of(cls, review: Manifest) -> ReviewedUser | None:
        status = mapping(review.get("status"))
        user = mapping(status.get("user"))
        if status.get("authenticated") is not True or not user:
            return None
        groups = user.get("groups")
        return cls(
            username=text(user.get("username")),
            uid=text(user.get("uid")),
            groups=tuple(g for g in groups if isinstance(g, str))
            if isinstance(groups, list)
            else (),
        )


@dataclass(frozen=True)
class ResourceAttributes:
    """What an access review asks about: ``verb`` on ``group``'s ``resource``."""

    verb: str
    group: str
    resource: str
    namespace: str = ""
    subresource: str = ""

    def body(self) -> dict[str, str]:
        found = {"verb": self.verb, "group": self.group, "resource": self.resource}
        if self.namespace:
            found["namespace"] = self.namespace
        if self.subresource:
            found["subresource"] = self.subresource
        return found


def subject_access_review(
    attributes: ResourceAttributes, user: str, groups: tuple[str, ...] = (), uid: str = ""
) -> dict[str, Any]:
    """The SubjectAccessReview that asks whether ``user`` may do ``attributes``."""
    spec: dict[str, Any] = {"resourceAttributes": attributes.body(), "user": user}
    if groups:
        spec["groups"] = list(groups)
    if uid:
        spec["uid"] = uid
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}


def self_subject_access_review(attributes: ResourceAttributes) -> dict[str, Any]:
    """The SelfSubjectAccessReview that asks whether the caller may do ``attributes``."""
    return {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": attributes.body()},
    }


def allowed(review: Manifest) -> bool:
    """Whether an access review's answer allows (anything else, a denial)."""
    return mapping(review.get("status")).get("allowed") is True
