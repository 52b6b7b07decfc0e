import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { Api, authHeaders, failure, parseKey, stackPath, type Fetch } from "../src/api";

describe("stack keys", () => {
  it("parse namespace/name, and nothing else", () => {
    assert.deepEqual(parseKey("team/alpha"), { namespace: "team", name: "alpha" });
    for (const text of [null, "", "alpha", "team/", "/alpha", "a/b/c"]) {
      assert.equal(parseKey(text), null, String(text));
    }
    assert.equal(
      stackPath({ namespace: "team", name: "alpha" }),
      "/api/v1/namespaces/team/stacks/alpha",
    );
  });
});

describe("requests", () => {
  it("carry the bearer token when one was typed in", () => {
    assert.deepEqual(authHeaders(""), {});
    assert.deepEqual(authHeaders("t", { "Content-Type": "application/json" }), {
      "Content-Type": "application/json",
      Authorization: "Bearer t",
    });
  });

  it("say a refusal by the API's error body, else by path and status", () => {
    const body = { error: { status: 409, code: "Conflict", message: "already decided" } };
    assert.equal(failure("/p", 409, body), "Conflict: already decided");
    assert.equal(failure("/p", 502, "<html>"), "/p: 502");
    assert.equal(failure("/p", 500, { error: "x" }), "/p: 500");
  });

  it("post JSON and throw the API's message when refused", async () => {
    const sent: [string, RequestInit | undefined][] = [];
    const fetcher: Fetch = (input, init) => {
      sent.push([input, init]);
      const refusal = { error: { code: "Forbidden", message: "RBAC says no" } };
      return Promise.resolve(new Response(JSON.stringify(refusal), { status: 403 }));
    };
    const api = new Api("t", fetcher);
    await assert.rejects(api.post("/state", { executionState: "Paused" }), {
      message: "Forbidden: RBAC says no",
    });
    assert.equal(sent[0]?.[1]?.body, '{"executionState":"Paused"}');
    assert.deepEqual(sent[0][1].headers, {
      "Content-Type": "application/json",
      Authorization: "Bearer t",
    });
  });

  it("read JSON, and throw path and status when refused", async () => {
    const fetcher: Fetch = (input) =>
      Promise.resolve(
        input === "/ok" ? Response.json({ items: [] }) : new Response("", { status: 404 }),
      );
    const api = new Api("", fetcher);
    assert.deepEqual(await api.get("/ok"), { items: [] });
    await assert.rejects(api.get("/missing"), { message: "/missing: 404" });
  });
});
