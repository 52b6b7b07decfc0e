/**
 * The charts as pictures described in data, pure: each is a list of SVG marks with its
 * label (which says its numbers, for screen readers and tests) and the `data-*` values
 * the end-to-end tests read. {@link ./svg} puts them in the page.
 *
 * Each bar names its tick (`data-tick`) and value (`data-value`); an unknown value is a
 * pale full-height band (`class="unknown"`: a gap in the series, never a zero bar).
 * Colours are the page's: green, amber, grey and red by outcome and state.
 */

import { clock, count, duration, money, tickName } from "./format";
import type { StackSummary, Tick } from "./models";
import { band, barHeight, barLength, plotArea, slot, topOf, type Size } from "./scales";

export const COLOURS: Readonly<Record<string, string>> = {
  Succeeded: "#1a7f37",
  Failed: "#cf222e",
  Dropped: "#9a6700",
  Running: "#1a7f37",
  Paused: "#9a6700",
  Stopped: "#6e7781",
  Invalid: "#cf222e",
  tokens: "#0969da",
  cost: "#8250df",
  unknown: "#d8dee4",
};

/** The fleet chart's rows (Invalid: a spec the operator refuses, whatever was requested). */
export const STATES = ["Running", "Paused", "Stopped", "Invalid"] as const;
export type State = (typeof STATES)[number];

export interface Mark {
  readonly tag: "path" | "rect" | "text" | "title";
  readonly attrs: Readonly<Record<string, string | number>>;
  readonly text?: string;
  readonly children?: readonly Mark[];
}

export interface Chart {
  readonly heading: string;
  readonly label: string;
  readonly marks: readonly Mark[];
  /** The chart's `data-*` attributes. */
  readonly data: Readonly<Record<string, string>>;
}

const text = (attrs: Mark["attrs"], words: string): Mark => ({ tag: "text", attrs, text: words });
const title = (words: string): Mark => ({ tag: "title", attrs: {}, text: words });

/** How one series of a tick chart reads its ticks. */
interface Series {
  readonly heading: string;
  readonly label: string;
  /** The tick's value, or null for unknown. */
  value(t: Tick): number | null;
  colour(t: Tick): string;
  format(v: number): string;
  /** A bar's least height in pixels (a zero included). */
  readonly least: number;
  /** What an empty chart says. */
  readonly empty: string;
}

const when = (t: Tick): number | null => t.startedAt ?? t.finishedAt;

/** One bar per tick, oldest on the left, on a scale from 0 to the largest value. */
export function tickBars(size: Size, ticks: readonly Tick[], series: Series): Chart {
  const box = plotArea(size, 48);
  const values = ticks.map((t) => series.value(t));
  const top = topOf(values);
  const height = box.bottom - box.top;
  const marks: Mark[] = [
    {
      tag: "path",
      attrs: { class: "axis", d: `M${box.left} ${box.top}V${box.bottom}H${box.right}` },
    },
    text({ x: box.left - 4, y: box.top + 8, "text-anchor": "end" }, series.format(top)),
    text({ x: box.left - 4, y: box.bottom, "text-anchor": "end" }, series.format(0)),
  ];
  const first = ticks[0];
  const last = ticks[ticks.length - 1];
  if (first === undefined || last === undefined) {
    const middle = { x: (box.left + box.right) / 2, y: (box.top + box.bottom) / 2 };
    marks.push(text({ ...middle, "text-anchor": "middle" }, series.empty));
  } else {
    const at = (t: Tick): string => {
      const seconds = when(t);
      return seconds === null ? "" : clock(seconds);
    };
    marks.push(text({ x: box.left, y: box.bottom + 12 }, at(first)));
    marks.push(text({ x: box.right, y: box.bottom + 12, "text-anchor": "end" }, at(last)));
  }
  let points = 0;
  let unknown = 0;
  ticks.forEach((t, i) => {
    const { x, width } = slot(i, ticks.length, box);
    const v = values[i] ?? null;
    const name = tickName(t.tickId);
    if (v === null) {
      unknown += 1;
      marks.push({
        tag: "rect",
        attrs: {
          x,
          y: box.top,
          width,
          height,
          fill: COLOURS.unknown ?? "",
          class: "unknown",
          "data-tick": t.tickId,
        },
        children: [title(`${name}: unknown`)],
      });
      return;
    }
    points += 1;
    const h = barHeight(v, top, height, series.least);
    marks.push({
      tag: "rect",
      attrs: {
        x,
        y: box.bottom - h,
        width,
        height: h,
        fill: series.colour(t),
        class: "bar",
        "data-tick": t.tickId,
        "data-value": v,
      },
      children: [title(`${name} ${t.outcome}: ${series.format(v)}`)],
    });
  });
  return {
    heading: series.heading,
    label: series.label,
    marks,
    data: { points: String(points), unknown: String(unknown) },
  };
}

export interface TickCharts {
  readonly durations: Chart;
  readonly tokens: Chart;
  readonly cost: Chart;
}

/** A colour by name, or `fallback`'s (every name used here is in COLOURS). */
const colour = (name: string, fallback = "Dropped"): string =>
  COLOURS[name] ?? COLOURS[fallback] ?? "";

/**
 * The selected stack's tick charts: duration (coloured by outcome), tokens and cost of
 * its newest ticks, oldest first; `loading`: they are not read yet.
 */
export function tickCharts(
  key: string,
  ticks: readonly Tick[],
  loading: boolean,
  size: Size,
): TickCharts {
  const n = ticks.length;
  const none = loading ? "loading…" : "no ticks yet";
  const outcomes = new Map<string, number>();
  for (const t of ticks) outcomes.set(t.outcome, (outcomes.get(t.outcome) ?? 0) + 1);
  const byOutcome = [...outcomes].map(([outcome, k]) => `${k} ${outcome}`).join(", ");
  const ms = ticks.map((t) => t.durationMs ?? 0);
  const durations = tickBars(size, ticks, {
    heading: "duration per tick" + (n ? ` — ${byOutcome}` : ""),
    label: n
      ? `Ticks of ${key}: the last ${n}, ${byOutcome}; longest ` +
        `${duration(Math.max(...ms))}, newest ${duration(ms[n - 1] ?? 0)}.`
      : `Ticks of ${key}: ${none}.`,
    value: (t) => t.durationMs ?? 0,
    colour: (t) => colour(t.outcome),
    format: duration,
    least: 3,
    empty: none,
  });

  const spent = ticks.map((t) => t.tokens);
  const total = spent.reduce((a, b) => a + b, 0);
  const tokens = tickBars(size, ticks, {
    heading: "tokens per tick" + (n ? ` — ${total} in the last ${n}` : ""),
    label: n
      ? `Tokens of ${key}: ${total} in the last ${n} ticks, at most ${Math.max(...spent)} in one.`
      : `Tokens of ${key}: ${none}.`,
    value: (t) => t.tokens,
    colour: () => colour("tokens"),
    format: count,
    least: 0,
    empty: none,
  });

  return { durations, tokens, cost: costChart(key, ticks, none, size) };
}

/** Cost per tick: a priced tick is a bar, an unknown one a gap, an unpriced API says so. */
function costChart(key: string, ticks: readonly Tick[], none: string, size: Size): Chart {
  const n = ticks.length;
  const reported = ticks.some((t) => "costUSD" in t);
  const priced = ticks.flatMap((t) => (typeof t.costUSD === "number" ? [t.costUSD] : []));
  const usd = priced.reduce((a, b) => a + b, 0);
  const unknown = n - priced.length;
  const label = !n
    ? `Cost of ${key}: ${none}.`
    : !reported
      ? `Cost of ${key}: not reported by the API.`
      : `Cost of ${key}: ${money(usd)} over ${priced.length} priced ticks of the last ${n}` +
        (unknown ? `; ${unknown} unknown (a model without a price).` : ".");
  const heading =
    "cost per tick" +
    (!n
      ? ""
      : !reported
        ? " — not reported"
        : ` — ${money(usd)}` + (unknown ? `, ${unknown} unknown` : ""));
  return tickBars(size, reported ? ticks : [], {
    heading,
    label,
    value: (t) => (typeof t.costUSD === "number" ? t.costUSD : null),
    colour: () => colour("cost"),
    format: money,
    least: 0,
    empty: n ? "cost not reported" : none,
  });
}

/** The state a stack is counted under in the fleet chart, if one of {@link STATES}. */
export function stateOf(s: StackSummary): State | null {
  const state = s.phase === "Invalid" ? "Invalid" : s.executionState;
  return STATES.find((known) => known === state) ?? null;
}

export function countByState(stacks: Iterable<StackSummary>): Record<State, number> {
  const counts: Record<State, number> = { Running: 0, Paused: 0, Stopped: 0, Invalid: 0 };
  for (const s of stacks) {
    const state = stateOf(s);
    if (state) counts[state] += 1;
  }
  return counts;
}

/** The fleet by state: a row a state, a bar as long as its count (none for zero). */
export function fleetChart(counts: Readonly<Record<State, number>>, size: Size): Chart {
  const label = "Stacks by state: " + STATES.map((state) => `${state} ${counts[state]}`).join(", ");
  const box = plotArea(size, 58);
  const below = 10;
  const most = Math.max(...STATES.map((state) => counts[state]));
  const marks: Mark[] = [];
  let points = 0;
  STATES.forEach((state, i) => {
    const row = band(i, STATES.length, box, below);
    marks.push(text({ x: box.left - 6, y: row.y + 11, "text-anchor": "end" }, state));
    const width = barLength(counts[state], most, box.right - box.left - 30);
    if (counts[state]) {
      points += 1;
      marks.push({
        tag: "rect",
        attrs: {
          x: box.left,
          y: row.y + 2,
          width,
          height: row.height - 6,
          fill: colour(state),
          "data-state": state,
        },
        children: [title(`${state}: ${counts[state]}`)],
      });
    }
    marks.push(text({ x: box.left + width + 4, y: row.y + 11 }, String(counts[state])));
  });
  marks.push({
    tag: "path",
    attrs: { class: "axis", d: `M${box.left} ${box.top}V${box.bottom + below}` },
  });
  return {
    heading: "stacks by state",
    label,
    marks,
    data: { points: String(points), counts: JSON.stringify(counts) },
  };
}
