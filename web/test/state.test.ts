import assert from "node:assert/strict";
import { describe, it } from "node:test";

import type { StackSummary } from "../src/models";
import { Fleet, Selection } from "../src/state";

function stack(
  namespace: string,
  name: string,
  ticks = 0,
  executionState = "Running",
): StackSummary {
  return {
    namespace,
    name,
    executionState,
    phase: null,
    ready: "True",
    stalled: false,
    ticks,
    lastTickResult: null,
  };
}

describe("the fleet", () => {
  it("says whether a stack is new and whether its tick count moved", () => {
    const fleet = new Fleet();
    assert.deepEqual(fleet.upsert(stack("team", "alpha", 1)), { added: true, ticked: true });
    assert.deepEqual(fleet.upsert(stack("team", "alpha", 1, "Paused")), {
      added: false,
      ticked: false,
    });
    assert.deepEqual(fleet.upsert(stack("team", "alpha", 2)), { added: false, ticked: true });
    assert.equal(fleet.size, 1);
  });

  it("places stacks in namespace/name order", () => {
    const fleet = new Fleet();
    for (const [namespace, name] of [
      ["team", "beta"],
      ["dev", "zeta"],
      ["team", "alpha"],
    ] as const) {
      fleet.upsert(stack(namespace, name));
    }
    assert.deepEqual(
      ["dev/zeta", "team/alpha", "team/beta"].map((key) => fleet.position(key)),
      [0, 1, 2],
    );
  });

  it("forgets a deleted stack and counts the rest by state", () => {
    const fleet = new Fleet();
    fleet.upsert(stack("team", "alpha"));
    fleet.upsert(stack("team", "beta", 0, "Paused"));
    assert.equal(fleet.remove("team/alpha"), true);
    assert.equal(fleet.remove("team/alpha"), false);
    assert.deepEqual(fleet.counts(), { Running: 0, Paused: 1, Stopped: 0, Invalid: 0 });
  });
});

describe("the selection", () => {
  it("makes every earlier choice stale, even of the same stack", () => {
    const selection = new Selection();
    assert.equal(selection.current, null);
    const first = selection.choose({ namespace: "team", name: "alpha" });
    assert.equal(first.key, "team/alpha");
    assert.ok(selection.isCurrent(first));
    const again = selection.choose({ namespace: "team", name: "alpha" });
    assert.ok(!selection.isCurrent(first));
    assert.ok(selection.isCurrent(again));
    assert.equal(selection.current, again);
  });
});
