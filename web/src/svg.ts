/**
 * Charts into the page: a {@link Chart} drawn into its inline `<svg>`. Each chart keeps
 * a stable id, `role="img"`, an `aria-label` and a `<title>` that say its numbers.
 */

import type { Chart, Mark } from "./charts";
import type { Size } from "./scales";

const SVG_NS = "http://www.w3.org/2000/svg";

function place(parent: Element, mark: Mark): void {
  const node = document.createElementNS(SVG_NS, mark.tag);
  for (const [name, value] of Object.entries(mark.attrs)) node.setAttribute(name, String(value));
  if (mark.text !== undefined) node.textContent = mark.text;
  for (const child of mark.children ?? []) place(node, child);
  parent.appendChild(node);
}

/** The chart's size as the shell sets it (its `width` and `height`). */
export function sizeOf(svg: SVGSVGElement): Size {
  return { width: Number(svg.getAttribute("width")), height: Number(svg.getAttribute("height")) };
}

export function draw(svg: SVGSVGElement, chart: Chart): void {
  svg.replaceChildren();
  svg.setAttribute("aria-label", chart.label);
  place(svg, { tag: "title", attrs: {}, text: chart.label });
  place(svg, { tag: "text", attrs: { x: 0, y: 11, class: "heading" }, text: chart.heading });
  for (const mark of chart.marks) place(svg, mark);
  Object.assign(svg.dataset, chart.data);
}
