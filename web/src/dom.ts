/** The page's DOM at its edge: typed look-ups and the few ways the page writes lists. */

/** The element with `id`, of the kind the shell (static/index.html) declares. */
export function byId<T extends Element>(id: string, kind: abstract new () => T): T {
  const element = document.getElementById(id);
  if (!(element instanceof kind)) throw new Error(`the page has no ${kind.name} #${id}`);
  return element;
}

/** The live lists keep their newest lines: enough to see growth, never unbounded. */
export const LIST_LINES = 200;

/** A line on top of a live list (trace, feed), dropping the oldest past {@link LIST_LINES}. */
export function prepend(list: HTMLElement, text: string, cls = ""): void {
  const item = document.createElement("li");
  item.textContent = text;
  if (cls) item.className = cls;
  list.insertBefore(item, list.firstChild);
  while (list.children.length > LIST_LINES) list.lastElementChild?.remove();
}

/** Replace a list's entries: one `tag` element a line. */
export function fill<T>(
  list: HTMLElement,
  items: readonly T[],
  line: (item: T) => string,
  tag: "li" | "option" = "li",
): void {
  list.replaceChildren(
    ...items.map((item) => {
      const entry = document.createElement(tag);
      entry.textContent = line(item);
      return entry;
    }),
  );
}

export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The steering notice: what an action did, or (red) why it failed. */
export function notice(text: string, failed: boolean): void {
  const element = byId("notice", HTMLElement);
  element.textContent = text;
  element.className = failed ? "error" : "";
}

/** Run a steering action and say its outcome in the notice. */
export async function steer(action: () => Promise<string>): Promise<void> {
  try {
    notice(await action(), false);
  } catch (error) {
    notice(errorText(error), true);
  }
}
