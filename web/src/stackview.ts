/**
 * The selected stack: its trace and feed (live), its plan, long-term memory, artifacts,
 * inputs and approvals (read again when a step commits), and its tick charts.
 */

import { stackPath, type Api, type StackKey } from "./api";
import { tickCharts } from "./charts";
import { byId, errorText, fill, notice, prepend, steer } from "./dom";
import {
  approvalLine,
  artifactLine,
  decided,
  feedLine,
  inputLine,
  longTermLines,
  planLine,
  traceLine,
} from "./format";
import { latestOnly } from "./latest";
import type {
  AgentInfo,
  Approval,
  Artifact,
  Decision,
  FeedEntry,
  InputEntry,
  Memory,
  Page,
  Tick,
  TraceEntry,
} from "./models";
import type { Chosen, Selection } from "./state";
import { subscribe, type Listener, type Stream } from "./stream";
import { draw, sizeOf } from "./svg";

/** The newest ticks charted: one page of the ticks endpoint. */
export const CHART_TICKS = 60;
const CHARTS = { durations: "chart-ticks", tokens: "chart-tokens", cost: "chart-cost" } as const;
/** What select() clears: lists of the previous stack that are not refilled at once. */
const LISTS = ["plan", "longterm", "artifacts", "inputs", "approvals", "search-results"];

/** A page of entries: its newest entry's stream id ("0-0": from the start). */
const newest = (page: Page<{ readonly id: string }>): string => page.items[0]?.id ?? "0-0";

export class StackView {
  #streams: Stream[] = [];

  /** Plan, memory, artifacts, inputs and approvals change when a step commits. */
  readonly refreshState = latestOnly((chosen: Chosen) => this.#readState(chosen));
  /** Ticks are read again when the stack's status or trace moves. */
  readonly refreshCharts = latestOnly((chosen: Chosen) => this.#readTicks(chosen));

  constructor(
    private readonly api: Api,
    private readonly selection: Selection,
    /** Stream status: the fleet's status line says it. */
    private readonly watcher: Omit<Listener<unknown>, "event">,
    /** Called once a stack is chosen (the fleet marks its row). */
    private readonly chosen: () => void,
  ) {}

  /** Stop the selected stack's streams (another is chosen, or the page is left). */
  close(): void {
    for (const stream of this.#streams) stream.close();
    this.#streams = [];
  }

  /** The fleet saw `key`'s tick count move: redraw its charts if it is shown. */
  ticked(key: string): void {
    const current = this.selection.current;
    if (current?.key === key) this.refreshCharts(current);
  }

  async select(stack: StackKey): Promise<void> {
    this.close();
    const chosen = this.selection.choose(stack);
    this.chosen();
    const title = byId("title", HTMLElement);
    title.textContent = chosen.key;
    const base = stackPath(stack);
    const feed = byId("feed", HTMLElement);
    const trace = byId("trace", HTMLElement);
    for (const list of [feed, trace, ...LISTS.map((id) => byId(id, HTMLElement))]) {
      list.replaceChildren();
    }
    notice("", false);
    byId("search-notice", HTMLElement).textContent = "";
    const charts = byId("charts", HTMLElement);
    charts.hidden = true;
    let feedPage: Page<FeedEntry>, tracePage: Page<TraceEntry>, agents: Page<AgentInfo>;
    try {
      [feedPage, tracePage, agents] = await Promise.all([
        this.api.get<Page<FeedEntry>>(`${base}/feed?limit=20`),
        this.api.get<Page<TraceEntry>>(`${base}/traces?limit=40`),
        this.api.get<Page<AgentInfo>>(`${base}/agents`),
      ]);
    } catch (error) {
      if (this.selection.isCurrent(chosen))
        title.textContent = `${chosen.key} — ${errorText(error)}`;
      return;
    }
    if (!this.selection.isCurrent(chosen)) return; // another stack was chosen meanwhile
    fill(byId("agent", HTMLSelectElement), agents.items, (a) => a.name, "option");
    byId("controls", HTMLElement).hidden = false;
    byId("search", HTMLElement).hidden = false;
    this.refreshState(chosen);
    this.#drawTicks(chosen.key, [], true);
    charts.hidden = false;
    this.refreshCharts(chosen);
    for (const f of [...feedPage.items].reverse()) prepend(feed, feedLine(f));
    for (const t of [...tracePage.items].reverse()) prepend(trace, traceLine(t), t.outcome);
    // Each stream resumes right after the newest entry shown: nothing written in
    // between is lost.
    const headers = this.api.headers();
    this.#streams = [
      subscribe<FeedEntry>(
        { path: `${base}/feed/stream`, headers, after: newest(feedPage) },
        { ...this.watcher, event: (_type, f) => prepend(feed, feedLine(f)) },
      ),
      subscribe<TraceEntry>(
        { path: `${base}/traces/stream`, headers, after: newest(tracePage) },
        {
          ...this.watcher,
          event: (_type, t) => {
            prepend(trace, traceLine(t), t.outcome);
            this.refreshState(chosen);
            this.refreshCharts(chosen);
          },
        },
      ),
    ];
  }

  async #readState(chosen: Chosen): Promise<void> {
    const base = stackPath(chosen.stack);
    try {
      const [memory, artifacts, inputs, approvals] = await Promise.all([
        this.api.get<Memory>(`${base}/memory`),
        this.api.get<Page<Artifact>>(`${base}/artifacts`),
        this.api.get<Page<InputEntry>>(`${base}/inputs?limit=20`),
        this.api.get<Page<Approval>>(`${base}/approvals`),
      ]);
      if (!this.selection.isCurrent(chosen)) return;
      this.#showApprovals(chosen, approvals.items);
      fill(byId("plan", HTMLElement), memory.plan, planLine);
      fill(byId("longterm", HTMLElement), longTermLines(memory), (line) => line);
      fill(byId("artifacts", HTMLElement), artifacts.items, artifactLine);
      fill(byId("inputs", HTMLElement), inputs.items, inputLine);
    } catch (error) {
      if (this.selection.isCurrent(chosen)) notice(errorText(error), true);
    }
  }

  /** Tool calls waiting for a person get Approve and Deny buttons; decided ones say how. */
  #showApprovals(chosen: Chosen, items: readonly Approval[]): void {
    const base = stackPath(chosen.stack);
    byId("approvals", HTMLElement).replaceChildren(
      ...[...items].reverse().map((a) => {
        const entry = document.createElement("li");
        entry.dataset.id = a.id;
        entry.textContent = approvalLine(a);
        if (a.state !== "Pending") return entry;
        for (const [decision, words, cls] of [
          ["Approved", "Approve", "approve"],
          ["Denied", "Deny", "deny"],
        ] as const) {
          const button = document.createElement("button");
          button.type = "button";
          button.className = cls;
          button.textContent = words;
          button.addEventListener("click", () => {
            void steer(async () => {
              const done = await this.api.post<Decision>(`${base}/approvals/${a.id}`, { decision });
              this.refreshState(chosen);
              return decided(done);
            });
          });
          entry.append(" ", button);
        }
        return entry;
      }),
    );
  }

  async #readTicks(chosen: Chosen): Promise<void> {
    if (!this.selection.isCurrent(chosen)) return;
    try {
      const page = await this.api.get<Page<Tick>>(
        `${stackPath(chosen.stack)}/ticks?limit=${CHART_TICKS}`,
      );
      if (this.selection.isCurrent(chosen))
        this.#drawTicks(chosen.key, [...page.items].reverse(), false);
    } catch (error) {
      if (this.selection.isCurrent(chosen)) notice(errorText(error), true);
    }
  }

  /** The stack's newest ticks, oldest first; `loading`: not read yet. */
  #drawTicks(key: string, ticks: readonly Tick[], loading: boolean): void {
    const svgs = {
      durations: byId(CHARTS.durations, SVGSVGElement),
      tokens: byId(CHARTS.tokens, SVGSVGElement),
      cost: byId(CHARTS.cost, SVGSVGElement),
    };
    // The three share the shell's size (560 × 110).
    const charts = tickCharts(key, ticks, loading, sizeOf(svgs.durations));
    for (const name of ["durations", "tokens", "cost"] as const) {
      const svg = svgs[name];
      draw(svg, charts[name]);
      // data-stack: whose ticks are drawn, once they are read
      if (loading) delete svg.dataset.stack;
      else svg.dataset.stack = key;
    }
  }
}
