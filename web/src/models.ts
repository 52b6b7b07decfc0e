/**
 * The read API's JSON as the page reads it: the fields it shows, typed as
 * `agentstack_api.models` declares them (a subset; the API sends more).
 *
 * `costUSD` is a number, `null` when a model of the step or tick has no price (unknown,
 * never zero), or absent from an API that does not price at all: hence `?:` and `| null`.
 */

export interface Page<T> {
  readonly items: readonly T[];
}

export interface StackSummary {
  readonly namespace: string;
  readonly name: string;
  /** Running, Paused or Stopped: what the spec requests. */
  readonly executionState: string;
  /** The operator's one-word summary (Completed, Invalid…), null before it wrote one. */
  readonly phase: string | null;
  readonly ready: string;
  readonly stalled: boolean;
  readonly ticks: number;
  readonly lastTickResult: string | null;
}

export interface Tick {
  readonly tickId: string;
  readonly outcome: string;
  readonly startedAt: number | null;
  readonly finishedAt: number | null;
  readonly durationMs: number | null;
  readonly tokens: number;
  readonly costUSD?: number | null;
}

export interface TraceEntry {
  readonly id: string;
  readonly tickId: string;
  readonly agent: string;
  readonly outcome: string;
  readonly model: string;
  readonly latencyMs: number;
  readonly actions: readonly string[];
  readonly error: string;
  readonly tools?: readonly { readonly tool: string; readonly outcome: string }[];
  readonly recalls?: readonly { readonly query: string; readonly hits: readonly string[] }[];
  readonly costUSD?: number | null;
}

export interface FeedEntry {
  readonly id: string;
  readonly agent: string;
  readonly content: string;
}

export interface AgentInfo {
  readonly name: string;
}

export interface PlanTask {
  readonly id: string;
  readonly status: string;
  readonly title: string;
  readonly note?: string;
}

export interface Memory {
  readonly plan: readonly PlanTask[];
  /** Long-term memory by section (decisions, delivered…). */
  readonly longTerm: Readonly<Record<string, readonly string[]>>;
}

export interface Artifact {
  readonly name: string;
  readonly version: number;
  readonly status: string;
  readonly author: string;
}

export interface InputEntry {
  readonly number: number;
  readonly sender: string;
  readonly agent: string;
  readonly content: string;
  /** Queued (not read yet) or Read. */
  readonly state: string;
  readonly tickId: string | null;
}

export interface InputAccepted {
  readonly number: number;
  readonly agent: string;
  readonly wakes: boolean;
}

export interface Approval {
  readonly id: string;
  readonly agent: string;
  readonly tool: string;
  readonly arguments: string;
  /** Pending, Approved, Denied, Executed… */
  readonly state: string;
  readonly decidedBy: string;
}

export interface Decision {
  readonly id: string;
  readonly state: string;
  readonly decidedBy: string;
}

export interface SearchHit {
  readonly id: string;
  readonly kind: string;
  readonly ref: string;
  readonly agent: string;
  readonly text: string;
  readonly score: number;
}

export interface SearchResult {
  /** The words searched for: empty when the query had only short or common words. */
  readonly terms: readonly string[];
  readonly archived: number;
  readonly items: readonly SearchHit[];
}

/** The API's error body (`agentstack_api.errors`). */
export interface ErrorResponse {
  readonly error: { readonly code: string; readonly message: string };
}
