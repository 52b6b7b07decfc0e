import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it, mock } from "node:test";

import type { FetchLike } from "eventsource-client";

import { subscribe, type Listener } from "../src/stream";

/** An answer of the fake API: a status and the chunks of its body (it then stays open). */
interface Answer {
  readonly status?: number;
  readonly chunks?: readonly string[];
  /** End the body after the chunks (the server dropped the stream). */
  readonly end?: boolean;
  /** Fail the request itself, as fetch does when the network does. */
  readonly fails?: string;
}

/** A fake fetch answering `answers` in turn; it records each request's headers. */
function fakeApi(answers: Answer[]) {
  const requests: Record<string, string>[] = [];
  const fetcher: FetchLike = (url, init) => {
    requests.push({ url: String(url), ...init?.headers });
    const answer = answers.shift() ?? {};
    if (answer.fails) return Promise.reject(new TypeError(answer.fails));
    const signal = (init?.signal ?? null) as AbortSignal | null;
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (const chunk of answer.chunks ?? [])
          controller.enqueue(new TextEncoder().encode(chunk));
        if (answer.end) controller.close();
        signal?.addEventListener("abort", () => controller.error(signal.reason));
      },
    });
    return Promise.resolve(new Response(body, { status: answer.status ?? 200 }));
  };
  return { requests, fetcher };
}

function recorder() {
  const seen: unknown[] = [];
  const listener: Listener<unknown> = {
    event: (type, data) => seen.push([type, data]),
    open: () => seen.push("open"),
    retrying: (reason) => seen.push(`retrying: ${reason}`),
  };
  return { seen, listener };
}

/** Let every pending promise and stream read run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i += 1) await new Promise((resolve) => setImmediate(resolve));
}

const PATH = "http://api.test/api/v1/stacks/stream";

describe("a live stream", () => {
  beforeEach(() => mock.timers.enable({ apis: ["setTimeout"] }));
  afterEach(() => mock.timers.reset());

  it("delivers events in order, by type, with their JSON, however the body is cut", async () => {
    const api = fakeApi([
      {
        chunks: [
          "retry: 2000\n\n: keep-alive\n\n",
          "id: 1-0\nevent: trace\nda",
          'ta: {"n": 1}\n\nid: 2-0\r\ndata: {"n": 2}\r\n',
          "\r\n",
        ],
      },
    ]);
    const { seen, listener } = recorder();
    const stream = subscribe({ path: PATH, headers: {} }, listener, api.fetcher);
    await settle();
    stream.close();
    assert.deepEqual(seen, ["open", ["trace", { n: 1 }], ["message", { n: 2 }]]);
  });

  it("starts after the entry given, with the caller's headers", async () => {
    const api = fakeApi([{}]);
    const { listener } = recorder();
    const request = { path: PATH, headers: { Authorization: "Bearer t0k" }, after: "5-0" };
    const stream = subscribe(request, listener, api.fetcher);
    await settle();
    stream.close();
    assert.equal(api.requests.length, 1);
    assert.equal(api.requests[0]?.Authorization, "Bearer t0k");
    assert.equal(api.requests[0]["Last-Event-ID"], "5-0");
  });

  it("reconnects when the server ends it, from the last event seen, after `retry`", async () => {
    const api = fakeApi([{ chunks: ['retry: 500\nid: 7-0\ndata: {"n": 7}\n\n'], end: true }, {}]);
    const { seen, listener } = recorder();
    const stream = subscribe({ path: PATH, headers: {}, after: "6-0" }, listener, api.fetcher);
    await settle();
    assert.equal(api.requests.length, 1);
    mock.timers.tick(499);
    await settle();
    assert.equal(api.requests.length, 1);
    mock.timers.tick(1);
    await settle();
    stream.close();
    assert.deepEqual(
      api.requests.map((r) => r["Last-Event-ID"]),
      ["6-0", "7-0"],
    );
    assert.deepEqual(seen, ["open", ["message", { n: 7 }], "retrying: the stream ended", "open"]);
  });

  it("retries a refused answer or a failed request, and says why", async () => {
    const api = fakeApi([{ status: 401 }, { fails: "Failed to fetch" }, {}]);
    const { seen, listener } = recorder();
    const stream = subscribe({ path: PATH, headers: {} }, listener, api.fetcher);
    await settle();
    mock.timers.tick(2000);
    await settle();
    mock.timers.tick(2000);
    await settle();
    stream.close();
    assert.equal(api.requests.length, 3);
    assert.deepEqual(seen, [`retrying: ${PATH}: 401`, "retrying: Failed to fetch", "open"]);
  });

  it("once closed, reads nothing more and never reconnects", async () => {
    const api = fakeApi([{ chunks: ['data: {"n": 1}\n\n'] }, {}]);
    const { seen, listener } = recorder();
    const stream = subscribe({ path: PATH, headers: {} }, listener, api.fetcher);
    await settle();
    stream.close();
    await settle();
    mock.timers.tick(10_000);
    await settle();
    assert.equal(api.requests.length, 1);
    assert.deepEqual(seen, ["open", ["message", { n: 1 }]]);
  });
});
