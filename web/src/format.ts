/**
 * The words and numbers the page shows: one pure function a kind of line, so that the
 * lines the end-to-end tests read are spelled in one place and unit-tested.
 */

import type {
  Approval,
  Artifact,
  Decision,
  FeedEntry,
  InputAccepted,
  InputEntry,
  Memory,
  PlanTask,
  SearchHit,
  SearchResult,
  StackSummary,
  TraceEntry,
} from "./models";

/** A tick's own name: the last part of `namespace/name/slot`. */
export function tickName(tickId: string): string {
  return tickId.split("/").pop() ?? tickId;
}

/** A Unix time (seconds) as the browser's local `HH:MM:SS`. */
export function clock(seconds: number): string {
  return new Date(seconds * 1000).toTimeString().slice(0, 8);
}

export function duration(ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`;
}

/** Dollars: cents where they say something, two significant digits below a cent. */
export function money(usd: number): string {
  return "$" + (usd >= 0.01 || usd === 0 ? usd.toFixed(2) : usd.toPrecision(2));
}

export function count(n: number): string {
  return n >= 10000 ? `${Math.round(n / 1000)}k` : String(n);
}

/** A step's cost: a model without a price costs "unknown", never $0. */
export function costText(usd: number | null): string {
  return usd === null ? "$unknown" : `$${usd.toFixed(6)}`;
}

export function traceLine(t: TraceEntry): string {
  const tools =
    (t.tools ?? []).map((u) => ` | ${u.tool} ${u.outcome}`).join("") +
    (t.recalls ?? []).map((r) => ` | recall "${r.query}": ${r.hits.length} hit(s)`).join("");
  const cost = t.costUSD === undefined ? "" : ` ${costText(t.costUSD)}`;
  return (
    `${tickName(t.tickId)} ${t.agent} ${t.outcome} ${t.model} ` +
    `${t.latencyMs}ms${cost} ${t.actions.join(", ")}${tools}` +
    (t.error ? ` — ${t.error}` : "")
  );
}

export function feedLine(f: FeedEntry): string {
  return `${f.agent}: ${f.content}`;
}

export function planLine(t: PlanTask): string {
  return `${t.id} [${t.status}] ${t.title}${t.note ? ` — ${t.note}` : ""}`;
}

/** Long-term memory, a line an entry, each after its section's name. */
export function longTermLines(memory: Memory): string[] {
  return Object.entries(memory.longTerm).flatMap(([section, entries]) =>
    entries.map((entry) => `${section.replace("_", " ")}: ${entry}`),
  );
}

export function artifactLine(a: Artifact): string {
  return `${a.name} v${a.version} ${a.status} by ${a.author}`;
}

export function inputLine(i: InputEntry): string {
  const read = i.state === "Read" && i.tickId ? ` in ${tickName(i.tickId)}` : "";
  return `#${i.number} ${i.sender} → ${i.agent}: ${i.content} — ${i.state}${read}`;
}

export function inputSent(sent: InputAccepted): string {
  return `input #${sent.number} sent to ${sent.agent}` + (sent.wakes ? "; ticking now" : "");
}

export function approvalLine(a: Approval): string {
  return (
    `${a.id} ${a.agent} → ${a.tool} ${a.arguments} — ${a.state}` +
    (a.decidedBy ? ` by ${a.decidedBy}` : "")
  );
}

export function decided(d: Decision): string {
  return `tool call ${d.id}: ${d.state} by ${d.decidedBy}`;
}

export const HIT_CHARS = 300;
/** A search hit: where it is from, and its text cut to {@link HIT_CHARS}. */
export function hitParts(hit: SearchHit): { where: string; text: string } {
  const cut = hit.text.length > HIT_CHARS ? hit.text.slice(0, HIT_CHARS - 1) + "…" : hit.text;
  return {
    where: `${hit.kind} ${hit.ref || "-"} by ${hit.agent || "-"} (${hit.score.toFixed(2)}): `,
    text: cut,
  };
}

export function searchNotice(found: SearchResult): string {
  return found.terms.length
    ? `${found.items.length} hit(s) for "${found.terms.join(" ")}" among ` +
        `${found.archived} archived item(s)`
    : "nothing to search for: only short or common words";
}

/** A fleet row's cells: text and class (the state's colour, the last result's). */
export function rowCells(s: StackSummary, key: string): [text: string, cls: string][] {
  // A completed goal is the stack's state now; a stalled one is marked beside it.
  const state = s.phase === "Completed" ? "Completed" : s.executionState;
  return [
    [key, ""],
    [state + (s.stalled ? " · stalled" : ""), s.stalled ? "Stalled" : state],
    [s.ready, ""],
    [String(s.ticks), s.lastTickResult ?? ""],
  ];
}
