/**
 * The page's state, in one place: the fleet as the API last listed or streamed it, and
 * which stack is selected. Views read it and draw; only these classes change it.
 */

import { keyText, type StackKey } from "./api";
import { countByState, type State } from "./charts";
import type { StackSummary } from "./models";

export class Fleet {
  readonly #stacks = new Map<string, StackSummary>();

  get size(): number {
    return this.#stacks.size;
  }

  /** Keep `summary`; say whether it is new and whether its tick count moved. */
  upsert(summary: StackSummary): { added: boolean; ticked: boolean } {
    const key = keyText(summary);
    const before = this.#stacks.get(key);
    this.#stacks.set(key, summary);
    return { added: before === undefined, ticked: before?.ticks !== summary.ticks };
  }

  /** Forget a deleted stack; say whether it was known. */
  remove(key: string): boolean {
    return this.#stacks.delete(key);
  }

  /** Where `key` stands among the stacks in `namespace/name` order. */
  position(key: string): number {
    return [...this.#stacks.keys()].sort().indexOf(key);
  }

  counts(): Record<State, number> {
    return countByState(this.#stacks.values());
  }
}

/** One choice of a stack; a later choice makes every earlier one stale. */
export interface Chosen {
  readonly stack: StackKey;
  readonly key: string;
  readonly serial: number;
}

/**
 * The selected stack. Reads started for a choice check it is still the current one
 * before they show anything: the user may have chosen another stack meanwhile.
 */
export class Selection {
  #serial = 0;
  #current: Chosen | null = null;

  get current(): Chosen | null {
    return this.#current;
  }

  choose(stack: StackKey): Chosen {
    this.#serial += 1;
    this.#current = { stack, key: keyText(stack), serial: this.#serial };
    return this.#current;
  }

  isCurrent(chosen: Chosen): boolean {
    return chosen.serial === this.#serial;
  }
}
