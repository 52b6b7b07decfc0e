import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { band, barHeight, barLength, plotArea, slot, topOf } from "../src/scales";

const box = plotArea({ width: 560, height: 110 }, 48);

describe("the plot area", () => {
  it("leaves room for the labels, the heading and the times", () => {
    assert.deepEqual(box, { left: 48, top: 18, right: 554, bottom: 96 });
  });
});

describe("the value scale", () => {
  it("tops at the largest known value, never below zero", () => {
    assert.equal(topOf([3, null, 7, 1]), 7);
    assert.equal(topOf([]), 0);
    assert.equal(topOf([null, null]), 0);
    assert.equal(topOf([-2]), 0);
  });

  it("maps values to heights in proportion, the largest filling the plot", () => {
    assert.equal(barHeight(7, 7, 78, 0), 78);
    assert.equal(barHeight(3.5, 7, 78, 0), 39);
  });

  it("keeps a small positive value visible and a zero at the least height", () => {
    assert.equal(barHeight(1, 1000, 78, 3), 3);
    assert.equal(barHeight(0, 1000, 78, 3), 3);
    assert.equal(barHeight(0, 0, 78, 0), 0);
  });
});

describe("bar slots", () => {
  it("put sixty bars side by side across the plot, each 7 pixels wide and apart", () => {
    const slots = Array.from({ length: 60 }, (_, i) => slot(i, 60, box));
    assert.ok(slots.every((s) => s.width === 7));
    assert.deepEqual(slots[0], { x: 49, width: 7 });
    const last = slots[59];
    assert.ok(last && last.x + last.width <= box.right);
    assert.ok(slots.slice(1).every((s, i) => s.x >= (slots[i]?.x ?? 0) + 8));
  });

  it("never make a bar narrower than a pixel", () => {
    assert.equal(slot(0, 10_000, box).width, 1);
  });

  it("give a lone bar the whole plot", () => {
    assert.deepEqual(slot(0, 1, box), { x: 49, width: 504 });
    assert.deepEqual(slot(0, 0, box), { x: 49, width: 504 });
  });
});

describe("horizontal bars", () => {
  const fleet = plotArea({ width: 320, height: 100 }, 58);

  it("stand in rows of equal height, the last ending below the plot by `below`", () => {
    const rows = [0, 1, 2, 3].map((i) => band(i, 4, fleet, 10));
    assert.deepEqual(
      rows.map((r) => r.y),
      [18, 38, 57, 77],
    );
    assert.ok(rows.every((r) => r.height === 19.5));
  });

  it("are as long as their share of the largest count", () => {
    assert.equal(barLength(2, 4, 226), 113);
    assert.equal(barLength(4, 4, 226), 226);
    assert.equal(barLength(0, 0, 226), 0);
  });
});
