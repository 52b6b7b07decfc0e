"""What the async Kubernetes layer makes of the API server's answers: an error class
per status (with the Status body's reason and message), and typed views of manifests
whose fields may be missing or null."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json

import pytest

from agentstack_core.kube.errors import (
    MESSAGE_LIMIT,
    ConflictError,
    ForbiddenError,
    GoneError,
    InvalidError,
    KubeError,
    NotFoundError,
    UnauthorizedError,
    UnreachableError,
    error_for,
)
from agentstack_core.kube.events import InvolvedObject, event_body
from agentstack_core.kube.jobs import Condition, ContainerStatus, Job, Pod, Terminated, Waiting
from agentstack_core.kube.leases import Lease, LeaseSpec
from agentstack_core.kube.manifests import Listing, ObjectMeta, Secret, WatchEvent
from agentstack_core.kube.paths import resource_path, secret_path
from agentstack_core.kube.reviews import (
    ResourceAttributes,
    ReviewedUser,
    allowed,
    subject_access_review,
)
from agentstack_core.kube.stacks import StackManifest, StackStatus, stack_path, stacks_path
from agentstack_core.reasons import ConditionType


def _status(code: int, reason: str, message: str) -> str:
    return json.dumps(
        {"kind": "Status", "status": "Failure", "code": code, "reason": reason, "message": message}
    )


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (401, UnauthorizedError),
        (403, ForbiddenError),
        (404, NotFoundError),
        (409, ConflictError),
        (410, GoneError),
        (422, InvalidError),
    ],
)
def test_each_status_a_caller_acts_on_has_its_class(status: int, kind: type[KubeError]) -> None:
    error = error_for(status, _status(status, "Because", "it says why"))
    assert type(error) is kind
    assert (error.status, error.reason, error.message) == (status, "Because", "it says why")
    assert str(error) == f"{status} Because: it says why"


def test_other_statuses_keep_their_code_and_a_body_that_is_no_status_is_its_message() -> None:
    error = error_for(503, "upstream connect error")
    assert type(error) is KubeError
    assert (error.status, error.reason, error.message) == (503, "HTTP503", "upstream connect error")
    assert error_for(500, "[1, 2]").message == ""  # JSON, but no Status
    assert len(error_for(500, "x" * 10_000).message) == MESSAGE_LIMIT


def test_an_unanswered_call_is_an_error_of_status_zero() -> None:
    unreachable = UnreachableError("connection refused")
    assert (unreachable.status, unreachable.reason) == (0, "Unreachable")


def test_metadata_reads_missing_and_null_fields_as_empty() -> None:
    assert ObjectMeta.of({}) == ObjectMeta(name="")
    meta = ObjectMeta.of(
        {
            "metadata": {
                "name": "a",
                "namespace": "n",
                "uid": "u",
                "generation": 3,
                "resourceVersion": "42",
                "creationTimestamp": None,
            }
        }
    )
    assert meta == ObjectMeta("a", "n", "u", 3, "42", "")


def test_a_listing_and_a_watch_event_carry_the_version_to_watch_from() -> None:
    listing = Listing.of(
        {"kind": "ConfigMapList", "metadata": {"resourceVersion": "7"}, "items": [{"a": 1}, None]}
    )
    assert listing.resource_version == "7"
    assert listing.kind == "ConfigMapList"
    assert listing.items == ({"a": 1}, {})
    assert Listing.of({"items": None}) == Listing((), "")
    event = WatchEvent.of({"type": "ADDED", "object": {"metadata": {"resourceVersion": "8"}}})
    assert (event.type, event.resource_version) == ("ADDED", "8")


def test_a_secrets_values_are_decoded_and_never_shown() -> None:
    secret = Secret.of(
        {
            "metadata": {"name": "keys", "namespace": "team"},
            "data": {
                "token": base64.b64encode(b"s3cret").decode(),
                "broken": "not base64!",
                "null": None,
            },
        }
    )
    assert secret.data == {"token": b"s3cret"}
    assert "s3cret" not in repr(secret)
    assert "s3cret" not in str(secret)
    assert Secret.of({"metadata": {"name": "empty"}}).data == {}


def test_a_token_review_finds_a_user_only_when_authenticated() -> None:
    user = {"username": "alice", "uid": "1", "groups": ["dev", 3]}
    found = ReviewedUser.of({"status": {"authenticated": True, "user": user}})
    assert found == ReviewedUser("alice", "1", ("dev",))
    assert ReviewedUser.of({"status": {"authenticated": False, "user": user}}) is None
    assert ReviewedUser.of({"status": {"authenticated": True}}) is None
    assert ReviewedUser.of({}) is None


def test_an_access_review_asks_for_what_is_given_and_allows_only_when_told() -> None:
    attributes = ResourceAttributes("get", "agentstack.dev", "agentstacks", "team")
    review = subject_access_review(attributes, "alice", ("dev",))
    assert review["spec"] == {
        "resourceAttributes": {
            "verb": "get",
            "group": "agentstack.dev",
            "resource": "agentstacks",
            "namespace": "team",
        },
        "user": "alice",
        "groups": ["dev"],
    }
    assert allowed({"status": {"allowed": True}})
    assert not allowed({"status": {"allowed": "yes"}})
    assert not allowed({})


def test_paths_name_collections_objects_and_subresources() -> None:
    assert resource_path("", "v1", "pods") == "api/v1/pods"
    assert secret_path("team", "keys") == "api/v1/namespaces/team/secrets/keys"
    assert stacks_path() == "apis/agentstack.dev/v1alpha1/agentstacks"
    assert (
        stack_path("team", "alpha", "status")
        == "apis/agentstack.dev/v1alpha1/namespaces/team/agentstacks/alpha/status"
    )


def test_a_stacks_status_summary_reads_what_dashboards_list() -> None:
    stack = StackManifest.of(
        {
            "metadata": {"name": "alpha", "namespace": "team"},
            "spec": {"goal": "g"},
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True"}, None],
                "ticks": 4,
                "costUSD": "0.25",
            },
        }
    )
    assert stack.execution_state == "Running"  # the spec's default
    summary = stack.summary
    assert summary.condition(ConditionType.READY) == "True"
    assert summary.condition(ConditionType.STALLED) is None
    assert (summary.ticks, summary.tokens_used, summary.cost_usd) == (4, 0, 0.25)
    assert StackStatus.of({"costUSD": 1.5, "unpricedCalls": 2}).cost_usd is None
    assert StackStatus.of({"costUSD": "many"}).cost_usd is None
    assert StackManifest.of({"spec": None, "status": None}).summary == StackStatus()


def test_a_lease_reads_its_times_and_writes_back_only_what_is_set() -> None:
    renewed = dt.datetime(2026, 1, 1, 0, 0, 5, 250_000, tzinfo=dt.UTC)
    read = Lease.of(
        {
            "metadata": {"name": "op", "namespace": "ns", "resourceVersion": "7"},
            "spec": {
                "holderIdentity": "a",
                "leaseDurationSeconds": 15,
                "acquireTime": "2026-01-01T00:00:00.000000Z",
                "renewTime": "2026-01-01T00:00:05.250000Z",
                "leaseTransitions": 2,
            },
        }
    )
    assert read.spec == LeaseSpec("a", 15, renewed - dt.timedelta(seconds=5.25), renewed, 2)
    released = dataclasses.replace(read.spec, holder=None, renew_time=None)
    assert dataclasses.replace(read, spec=released).manifest() == {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "op", "namespace": "ns", "resourceVersion": "7"},
        "spec": {
            "leaseDurationSeconds": 15,
            "acquireTime": "2026-01-01T00:00:00.000000Z",
            "leaseTransitions": 2,
        },
    }
    assert Lease.of({"spec": {"renewTime": "yesterday", "holderIdentity": None}}).spec == (
        LeaseSpec()
    )
    # A replace writes the whole object: what others set on it (Helm's labels and
    # annotations on the chart's Lease) goes back as it was read.
    owned = {
        "name": "op",
        "labels": {"app.kubernetes.io/managed-by": "Helm"},
        "annotations": {"meta.helm.sh/release-name": "agentstack-operator"},
    }
    metadata = Lease.of({"metadata": owned, "spec": {}}).manifest()["metadata"]
    assert (metadata["labels"], metadata["annotations"]) == (
        owned["labels"],
        owned["annotations"],
    )


def test_an_event_is_about_its_object_and_keeps_a_readable_message() -> None:
    about = InvolvedObject("agentstack.dev/v1alpha1", "AgentStack", "team", "demo", "u1")
    now = dt.datetime(2026, 1, 1, 1, 2, 3, 456, tzinfo=dt.UTC)
    body = event_body(about, "Started", "x" * 2000, component="op", warning=True, now=now)
    assert body["metadata"] == {"generateName": "demo.", "namespace": "team"}
    assert body["involvedObject"]["uid"] == "u1"
    assert len(body["message"]) == 1024
    assert body["type"] == "Warning"
    assert body["firstTimestamp"] == body["lastTimestamp"] == "2026-01-01T01:02:03Z"


def test_metadata_tells_a_missing_finalizer_list_from_an_empty_one() -> None:
    assert ObjectMeta.of({"metadata": {}}).finalizers is None
    meta = ObjectMeta.of(
        {
            "metadata": {
                "finalizers": [],
                "deletionTimestamp": "2026-01-01T00:00:00Z",
                "labels": {"app": "x", "odd": 3},
                "annotations": None,
            }
        }
    )
    assert meta.finalizers == ()
    assert meta.deletion_timestamp == "2026-01-01T00:00:00Z"
    assert (meta.labels, meta.annotations) == ({"app": "x"}, {})


def test_a_job_reads_its_true_conditions_and_a_pod_how_its_containers_ended() -> None:
    job = Job.of(
        {
            "status": {
                "startTime": "2026-01-01T00:00:00Z",
                "conditions": [
                    {"type": "Complete", "status": "False"},
                    {"type": "Failed", "status": "True", "reason": "DeadlineExceeded"},
                ],
            }
        }
    )
    assert job.holds("Complete") is None
    assert job.holds("Failed") == Condition("Failed", "True", "DeadlineExceeded")
    assert job.start_time == "2026-01-01T00:00:00Z"
    pod = Pod.of(
        {
            "status": {
                "containerStatuses": [
                    {"state": {"waiting": {"reason": "CrashLoopBackOff"}}, "lastState": {}},
                    {"state": {"terminated": {"reason": "Error", "message": "boom"}}},
                ]
            }
        }
    )
    assert pod.containers == (
        ContainerStatus(waiting=Waiting("CrashLoopBackOff", "")),
        ContainerStatus(terminated=Terminated("Error", None, "boom")),
    )
