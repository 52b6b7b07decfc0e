import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  COLOURS,
  countByState,
  fleetChart,
  tickCharts,
  type Chart,
  type Mark,
} from "../src/charts";
import type { StackSummary, Tick } from "../src/models";

const SIZE = { width: 560, height: 110 };

function tick(n: number, extra: Partial<Tick> = {}): Tick {
  return {
    tickId: `team/alpha/${String(n).padStart(6, "0")}`,
    outcome: "Succeeded",
    startedAt: 1_700_000_000 + n,
    finishedAt: 1_700_000_001 + n,
    durationMs: 100 * n,
    tokens: 10 * n,
    ...extra,
  };
}

/** The chart's bars as the end-to-end tests read them: tick, value, fill. */
function bars(chart: Chart): [string, number, string][] {
  return chart.marks
    .filter((m) => m.attrs.class === "bar")
    .map((m) => [
      String(m.attrs["data-tick"]),
      Number(m.attrs["data-value"]),
      String(m.attrs.fill),
    ]);
}

const gaps = (chart: Chart): string[] =>
  chart.marks.filter((m) => m.attrs.class === "unknown").map((m) => String(m.attrs["data-tick"]));

const texts = (chart: Chart): string[] =>
  chart.marks.flatMap((m: Mark) => (m.tag === "text" && m.text !== undefined ? [m.text] : []));

describe("tick charts", () => {
  const ticks = [tick(1), tick(2, { outcome: "Failed" }), tick(3)];
  const { durations, tokens, cost } = tickCharts("team/alpha", ticks, false, SIZE);

  it("draw a bar a tick, oldest first, coloured by outcome, naming its tick and value", () => {
    assert.deepEqual(bars(durations), [
      ["team/alpha/000001", 100, COLOURS.Succeeded],
      ["team/alpha/000002", 200, COLOURS.Failed],
      ["team/alpha/000003", 300, COLOURS.Succeeded],
    ]);
    assert.deepEqual(durations.data, { points: "3", unknown: "0" });
    assert.deepEqual(
      bars(tokens).map(([id, value]) => [id, value]),
      ticks.map((t) => [t.tickId, t.tokens]),
    );
  });

  it("say their numbers in their labels", () => {
    assert.equal(
      durations.label,
      "Ticks of team/alpha: the last 3, 2 Succeeded, 1 Failed; longest 300 ms, newest 300 ms.",
    );
    assert.equal(durations.heading, "duration per tick — 2 Succeeded, 1 Failed");
    assert.equal(tokens.label, "Tokens of team/alpha: 60 in the last 3 ticks, at most 30 in one.");
    assert.equal(cost.label, "Cost of team/alpha: not reported by the API.");
    assert.equal(cost.heading, "cost per tick — not reported");
    assert.deepEqual(cost.data, { points: "0", unknown: "0" });
    assert.ok(texts(cost).includes("cost not reported"));
  });

  it("scale the largest bar to the plot's height and label the scale's ends", () => {
    const heights = durations.marks
      .filter((m) => m.attrs.class === "bar")
      .map((m) => m.attrs.height);
    assert.deepEqual(heights, [26, 52, 78]);
    assert.deepEqual(texts(durations).slice(0, 2), ["300 ms", "0 ms"]);
  });

  it("give a tick's bar its title", () => {
    const first = durations.marks.find((m) => m.attrs.class === "bar");
    assert.deepEqual(first?.children, [
      { tag: "title", attrs: {}, text: "000001 Succeeded: 100 ms" },
    ]);
  });

  it("draw an unknown cost as a gap, a zero cost as no bar, and count them apart", () => {
    const priced = [tick(1, { costUSD: 0.5 }), tick(2, { costUSD: null }), tick(3, { costUSD: 0 })];
    const chart = tickCharts("team/alpha", priced, false, SIZE).cost;
    assert.deepEqual(bars(chart), [
      ["team/alpha/000001", 0.5, COLOURS.cost],
      ["team/alpha/000003", 0, COLOURS.cost],
    ]);
    const zero = chart.marks.find((m) => m.attrs["data-tick"] === "team/alpha/000003");
    assert.equal(zero?.attrs.height, 0);
    assert.deepEqual(gaps(chart), ["team/alpha/000002"]);
    assert.deepEqual(chart.data, { points: "2", unknown: "1" });
    assert.equal(
      chart.label,
      "Cost of team/alpha: $0.50 over 2 priced ticks of the last 3; 1 unknown (a model without a price).",
    );
    assert.equal(chart.heading, "cost per tick — $0.50, 1 unknown");
  });

  it("draw nothing for a stack without ticks, and say whether they are loading", () => {
    for (const [loading, words] of [
      [true, "loading…"],
      [false, "no ticks yet"],
    ] as const) {
      const charts = tickCharts("team/idle", [], loading, SIZE);
      for (const chart of [charts.durations, charts.tokens, charts.cost]) {
        assert.deepEqual([bars(chart), gaps(chart)], [[], []]);
        assert.equal(chart.data.points, "0");
        assert.ok(chart.label.endsWith(`${words}.`), chart.label);
        assert.ok(texts(chart).includes(words));
      }
    }
  });
});

describe("the fleet chart", () => {
  const summary = (executionState: string, phase: string | null = null): StackSummary => ({
    namespace: "team",
    name: "x",
    executionState,
    phase,
    ready: "True",
    stalled: false,
    ticks: 0,
    lastTickResult: null,
  });

  it("counts the requested state, or Invalid when the operator refused the spec", () => {
    const stacks = [
      summary("Running"),
      summary("Running", "Completed"),
      summary("Paused"),
      summary("Running", "Invalid"),
      summary("Unheard-of"),
    ];
    assert.deepEqual(countByState(stacks), { Running: 2, Paused: 1, Stopped: 0, Invalid: 1 });
  });

  it("draws a bar a state with stacks, none for an empty one, and says the counts", () => {
    const chart = fleetChart(
      { Running: 4, Paused: 2, Stopped: 0, Invalid: 0 },
      { width: 320, height: 100 },
    );
    const drawn = chart.marks.filter((m) => m.tag === "rect");
    assert.deepEqual(
      drawn.map((m) => [m.attrs["data-state"], m.attrs.width, m.attrs.fill]),
      [
        ["Running", 226, COLOURS.Running],
        ["Paused", 113, COLOURS.Paused],
      ],
    );
    assert.equal(chart.label, "Stacks by state: Running 4, Paused 2, Stopped 0, Invalid 0");
    assert.deepEqual(chart.data, {
      points: "2",
      counts: JSON.stringify({ Running: 4, Paused: 2, Stopped: 0, Invalid: 0 }),
    });
  });
});
