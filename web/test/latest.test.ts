import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { latestOnly } from "../src/latest";

/** A task whose runs finish when the test says, recording what it ran. */
function gated() {
  const ran: number[] = [];
  const finish: (() => void)[] = [];
  const task = (request: number): Promise<void> => {
    ran.push(request);
    return new Promise((resolve) => finish.push(resolve));
  };
  return { ran, finish, task };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

describe("latest-only reads", () => {
  it("run one at a time, then once more for the latest request made meanwhile", async () => {
    const { ran, finish, task } = gated();
    const request = latestOnly(task);
    request(1);
    request(2);
    request(3);
    await settle();
    assert.deepEqual(ran, [1]);
    finish.shift()?.();
    await settle();
    assert.deepEqual(ran, [1, 3]);
    finish.shift()?.();
    await settle();
    request(4);
    await settle();
    assert.deepEqual(ran, [1, 3, 4]);
  });

  it("keep serving after a run throws, and report what it threw", async () => {
    const ran: number[] = [];
    const failures: unknown[] = [];
    const boom = new Error("boom");
    let release = (): void => undefined;
    const request = latestOnly(
      async (n: number) => {
        ran.push(n);
        if (n === 1) {
          await new Promise<void>((resolve) => (release = resolve));
          throw boom;
        }
      },
      (error) => failures.push(error),
    );
    request(1);
    request(2);
    release();
    await settle();
    assert.deepEqual(ran, [1, 2]);
    assert.deepEqual(failures, [boom]);
  });
});
