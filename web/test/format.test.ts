import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  approvalLine,
  costText,
  count,
  duration,
  hitParts,
  inputLine,
  longTermLines,
  money,
  planLine,
  rowCells,
  searchNotice,
  tickName,
  traceLine,
} from "../src/format";
import type { StackSummary, TraceEntry } from "../src/models";

const step: TraceEntry = {
  id: "1-0",
  tickId: "team/alpha/000042",
  agent: "builder",
  outcome: "Succeeded",
  model: "scripted:demo",
  latencyMs: 12,
  actions: ["write_artifact", "update_task"],
  error: "",
};

const stack: StackSummary = {
  namespace: "team",
  name: "alpha",
  executionState: "Running",
  phase: "Ticking",
  ready: "True",
  stalled: false,
  ticks: 7,
  lastTickResult: "Succeeded",
};

describe("numbers", () => {
  it("says durations in ms below a second, in tenths of seconds above", () => {
    assert.deepEqual(
      [duration(0), duration(999.4), duration(1000), duration(12345)],
      ["0 ms", "999 ms", "1.0 s", "12.3 s"],
    );
  });

  it("says money in cents, and two significant digits below a cent", () => {
    assert.deepEqual(
      [money(0), money(0.01), money(1.234), money(0.000123)],
      ["$0.00", "$0.01", "$1.23", "$0.00012"],
    );
  });

  it("counts in thousands from ten thousand", () => {
    assert.deepEqual([count(9999), count(10000), count(123456)], ["9999", "10k", "123k"]);
  });

  it("names a tick by its last part", () => {
    assert.equal(tickName("team/alpha/000042"), "000042");
  });
});

describe("trace lines", () => {
  it("say who did what, in how long, and nothing of cost when the API prices nothing", () => {
    assert.equal(
      traceLine(step),
      "000042 builder Succeeded scripted:demo 12ms write_artifact, update_task",
    );
  });

  it("say a known cost to the micro-dollar and an unknown one as unknown, never $0", () => {
    assert.ok(traceLine({ ...step, costUSD: 0 }).includes(" 12ms $0.000000 "));
    assert.ok(traceLine({ ...step, costUSD: null }).includes(" 12ms $unknown "));
    assert.equal(costText(0.0000015), "$0.000002");
  });

  it("append tool calls, recalls and the error", () => {
    const line = traceLine({
      ...step,
      tools: [{ tool: "kb/lookup", outcome: "Executed" }],
      recalls: [{ query: "outline", hits: ["1-0", "2-0"] }],
      error: "timed out",
    });
    assert.ok(
      line.endsWith(' | kb/lookup Executed | recall "outline": 2 hit(s) — timed out'),
      line,
    );
  });
});

describe("state lines", () => {
  it("write a plan task with its note, and long-term memory by section", () => {
    assert.equal(planLine({ id: "t1", status: "done", title: "Outline" }), "t1 [done] Outline");
    assert.equal(
      planLine({ id: "t1", status: "done", title: "Outline", note: "ok" }),
      "t1 [done] Outline — ok",
    );
    assert.deepEqual(
      longTermLines({ plan: [], longTerm: { open_questions: ["why?"], delivered: ["t1: a"] } }),
      ["open questions: why?", "delivered: t1: a"],
    );
  });

  it("say in which tick an input was read", () => {
    const input = {
      number: 1,
      sender: "anonymous",
      agent: "reviewer",
      content: "Check it.",
      state: "Read",
      tickId: "team/alpha/000043",
    };
    assert.equal(inputLine(input), "#1 anonymous → reviewer: Check it. — Read in 000043");
    assert.equal(
      inputLine({ ...input, state: "Queued", tickId: null }),
      "#1 anonymous → reviewer: Check it. — Queued",
    );
  });

  it("say who decided a tool call", () => {
    const call = {
      id: "a1",
      agent: "builder",
      tool: "kb/lookup",
      arguments: "{}",
      state: "Pending",
      decidedBy: "",
    };
    assert.equal(approvalLine(call), "a1 builder → kb/lookup {} — Pending");
    assert.equal(
      approvalLine({ ...call, state: "Executed", decidedBy: "anonymous" }),
      "a1 builder → kb/lookup {} — Executed by anonymous",
    );
  });
});

describe("search", () => {
  const hit = { id: "1-0", kind: "task", ref: "", agent: "planner", text: "x", score: 1.234 };

  it("says where a hit is from and cuts long texts", () => {
    assert.deepEqual(hitParts(hit), { where: "task - by planner (1.23): ", text: "x" });
    const long = hitParts({ ...hit, text: "y".repeat(301) }).text;
    assert.equal(long.length, 300);
    assert.ok(long.endsWith("y…"));
  });

  it("says what was searched for among how many, or that nothing was", () => {
    const found = { terms: ["outline", "approach"], archived: 12, items: [hit] };
    assert.equal(searchNotice(found), '1 hit(s) for "outline approach" among 12 archived item(s)');
    assert.equal(
      searchNotice({ ...found, terms: [], items: [] }),
      "nothing to search for: only short or common words",
    );
  });
});

describe("fleet rows", () => {
  it("show the requested state, coloured by it, and the last result", () => {
    assert.deepEqual(rowCells(stack, "team/alpha"), [
      ["team/alpha", ""],
      ["Running", "Running"],
      ["True", ""],
      ["7", "Succeeded"],
    ]);
  });

  it("show a completed goal as the state, and mark a stalled stack beside it", () => {
    assert.deepEqual(rowCells({ ...stack, phase: "Completed" }, "k")[1], [
      "Completed",
      "Completed",
    ]);
    assert.deepEqual(rowCells({ ...stack, stalled: true }, "k")[1], [
      "Running · stalled",
      "Stalled",
    ]);
    assert.equal(rowCells({ ...stack, lastTickResult: null }, "k")[3]?.[1], "");
  });
});
