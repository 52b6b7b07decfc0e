/** The fleet at the page's left: a row a stack in `namespace/name` order, and its chart. */

import { keyOf, keyText, type StackKey } from "./api";
import { fleetChart } from "./charts";
import { byId } from "./dom";
import { rowCells } from "./format";
import type { StackSummary } from "./models";
import type { Fleet, Selection } from "./state";
import { draw, sizeOf } from "./svg";

/** The status line under the fleet: live with the fleet's size, or what went wrong. */
export class Status {
  constructor(private readonly fleet: Fleet) {}

  show(text: string): void {
    byId("status", HTMLElement).textContent = text;
  }

  /** Any stream that (re)connects says so, whichever of them gets there last. */
  live(): void {
    this.show(`${this.fleet.size} stacks, live`);
  }
}

export class FleetView {
  readonly #rows = new Map<string, HTMLTableRowElement>();

  constructor(
    private readonly fleet: Fleet,
    private readonly selection: Selection,
    private readonly choose: (stack: StackKey) => void,
  ) {}

  /** Show a stack as listed or streamed; say whether its tick count moved. */
  show(summary: StackSummary): boolean {
    const key = keyText(summary);
    const { ticked } = this.fleet.upsert(summary);
    this.drawChart();
    let row = this.#rows.get(key);
    if (!row) {
      row = document.createElement("tr");
      row.className = "stack";
      row.dataset.key = key;
      const stack = keyOf(summary);
      row.addEventListener("click", () => this.choose(stack));
      this.#rows.set(key, row);
      const body = byId("fleet", HTMLTableSectionElement);
      body.insertBefore(row, body.children[this.fleet.position(key)] ?? null);
    }
    row.replaceChildren(
      ...rowCells(summary, key).map(([text, cls]) => {
        const cell = document.createElement("td");
        cell.textContent = text;
        cell.className = cls;
        return cell;
      }),
    );
    row.classList.toggle("selected", key === this.selection.current?.key);
    return ticked;
  }

  remove(key: string): void {
    this.#rows.get(key)?.remove();
    this.#rows.delete(key);
    this.fleet.remove(key);
    this.drawChart();
  }

  /** Mark the selected stack's row. */
  highlight(): void {
    for (const [key, row] of this.#rows) {
      row.classList.toggle("selected", key === this.selection.current?.key);
    }
  }

  drawChart(): void {
    const svg = byId("chart-fleet", SVGSVGElement);
    draw(svg, fleetChart(this.fleet.counts(), sizeOf(svg)));
  }
}
