"""Webhook signatures and what an agent reads of a delivery (pure; the route is e2e).

Signatures are made here the way each sender documents it, independently of the code
under test: GitHub's hex HMAC of the body, Standard Webhooks' base64 HMAC of
``id.timestamp.body`` with a ``whsec_`` key.
"""

from __future__ import annotations

import base64
import json

import pytest

from agentstack_api.webhooks import (
    Delivery,
    content_of,
    standard_key,
    verify_github,
    verify_standard,
)
from agentstack_core.spec import SecretKeyRef, Webhook
from tests.signing import github_headers, standard_headers

KEY = b"It's a Secret to Everybody"
BODY = b'{"action":"opened","number":7}'
RAW = b"sixteen byte key"
WHSEC = b"whsec_" + base64.b64encode(RAW)
NOW = 1_800_000_000


GITHUB_ID = "72d3162e-cc78-11e3-81ab-4c9367dc0958"


def _github(body: bytes, key: bytes = KEY) -> dict[str, str]:
    return {k.lower(): v for k, v in github_headers(body, key, GITHUB_ID).items()}


def _standard(body: bytes, *, stamp: int = NOW) -> dict[str, str]:
    return standard_headers(body, RAW, "msg_1", stamp)


def test_github_signatures_verify_only_with_the_key_and_the_body() -> None:
    assert verify_github(BODY, _github(BODY), KEY) == Delivery(GITHUB_ID, "pull_request")
    assert verify_github(BODY, _github(BODY, b"another key"), KEY) is None
    assert verify_github(BODY + b" ", _github(BODY), KEY) is None  # the body changed
    unsigned = {k: v for k, v in _github(BODY).items() if k != "x-hub-signature-256"}
    assert verify_github(BODY, unsigned, KEY) is None
    no_id = {k: v for k, v in _github(BODY).items() if k != "x-github-delivery"}
    assert verify_github(BODY, no_id, KEY) is None  # no id, no replay protection: refused
    sha1 = {**_github(BODY), "x-hub-signature-256": "sha1=" + "0" * 40}
    assert verify_github(BODY, sha1, KEY) is None


def test_standard_signatures_verify_within_the_time_window() -> None:
    headers = _standard(BODY)
    assert verify_standard(BODY, headers, WHSEC, now=NOW, tolerance=300) == Delivery("msg_1")
    assert verify_standard(BODY, headers, RAW, now=NOW, tolerance=300) is not None  # raw key
    assert verify_standard(BODY, headers, WHSEC, now=NOW + 301, tolerance=300) is None
    assert verify_standard(BODY, headers, WHSEC, now=NOW - 301, tolerance=300) is None
    assert verify_standard(b"{}", headers, WHSEC, now=NOW, tolerance=300) is None
    other = {**headers, "webhook-id": "msg_2"}  # the id is signed too
    assert verify_standard(BODY, other, WHSEC, now=NOW, tolerance=300) is None


def test_any_of_several_standard_signatures_may_match() -> None:
    headers = _standard(BODY)
    rotated = f"v1,{base64.b64encode(b'x' * 32).decode()} {headers['webhook-signature']}"
    assert verify_standard(
        BODY, {**headers, "webhook-signature": rotated}, WHSEC, now=NOW, tolerance=5
    )
    v2 = headers["webhook-signature"].replace("v1,", "v2,")
    assert not verify_standard(
        BODY, {**headers, "webhook-signature": v2}, WHSEC, now=NOW, tolerance=5
    )


def test_a_whsec_key_is_decoded_and_a_raw_one_kept() -> None:
    assert standard_key(WHSEC) == RAW
    assert standard_key(b"  plain  ") == b"plain"
    assert standard_key(b"whsec_not base64!") == b"whsec_not base64!"


HOOK = Webhook(name="github", secret_ref=SecretKeyRef("hooks", "github"))


def test_an_agent_reads_the_event_and_the_body_without_api_links() -> None:
    body = json.dumps(
        {
            "action": "opened",
            "url": "https://api.github.com/repos/o/r/pulls/7",
            "html_url": "https://github.com/o/r/pull/7",
            "pull_request": {"title": "Fix", "comments_url": "https://api.github.com/x"},
        }
    ).encode()
    content = content_of(HOOK, Delivery("d-1", "pull_request"), body, 4096)
    head, text = content.split("\n", 1)
    assert head == "webhook github, event pull_request, delivery d-1:"
    assert json.loads(text) == {
        "action": "opened",
        "html_url": "https://github.com/o/r/pull/7",
        "pull_request": {"title": "Fix"},
    }
    assert content_of(HOOK, Delivery("d-2"), b"build 7 is green", 4096).endswith(
        "delivery d-2:\nbuild 7 is green"
    )


@pytest.mark.parametrize("limit", [64, 100, 257])
def test_a_long_delivery_is_cut_to_the_input_limit_as_valid_utf8(limit: int) -> None:
    body = ("é" * 500).encode()
    content = content_of(HOOK, Delivery("d"), body, limit)
    encoded = content.encode()
    assert len(encoded) <= limit
    assert content.endswith(" bytes, cut)")
    assert "\ufffd" not in content
