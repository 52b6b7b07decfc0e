/**
 * Chart geometry: from numbers to pixels, pure. The charts are a few bars, so two
 * linear maps serve (a value to a bar's height, an index to a bar's slot); they round
 * to whole pixels, so that bars are crisp and as wide as the tests count them.
 */

export interface Size {
  readonly width: number;
  readonly height: number;
}

/** The plot area inside a chart: room above for the heading, below for the times. */
export interface Box {
  readonly left: number;
  readonly top: number;
  readonly right: number;
  readonly bottom: number;
}

const HEADING = 18;
const RIGHT_MARGIN = 6;
const FOOT = 14;

/** The plot area of a chart of `size` whose labels take `left` pixels. */
export function plotArea(size: Size, left: number): Box {
  return { left, top: HEADING, right: size.width - RIGHT_MARGIN, bottom: size.height - FOOT };
}

/** The largest known value, never below zero (an empty or unknown series tops at 0). */
export function topOf(values: readonly (number | null)[]): number {
  return Math.max(0, ...values.filter((v): v is number => v !== null));
}

/** Where bar `index` of `count` stands (oldest on the left), a pixel apart from the next. */
export function slot(index: number, count: number, box: Box): { x: number; width: number } {
  const step = (box.right - box.left - 1) / Math.max(count, 1);
  return { x: Math.round(box.left + 1 + index * step), width: Math.max(1, Math.floor(step) - 1) };
}

/**
 * A bar's height for `value` on a scale whose largest value is `top`: proportional and
 * at least `least` pixels, so a small positive value still shows (a zero is `least`).
 */
export function barHeight(value: number, top: number, height: number, least: number): number {
  return value > 0 ? Math.max(least, Math.round((height * value) / (top || 1))) : least;
}

/** Row `index` of `rows` horizontal bars: its top pixel and the height it may take. */
export function band(
  index: number,
  rows: number,
  box: Box,
  below: number,
): { y: number; height: number } {
  const step = (box.bottom + below - box.top) / rows;
  return { y: Math.round(box.top + index * step), height: step };
}

/** A horizontal bar's length for `value` when `most` fills `span` pixels. */
export function barLength(value: number, most: number, span: number): number {
  return Math.round((span * value) / Math.max(1, most));
}
