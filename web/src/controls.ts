/**
 * The selected stack's forms: pause, resume and send an input (what `kubectl agentstack`
 * posts, as the caller), and the search of its archive.
 */

import { stackPath, type Api } from "./api";
import { byId, errorText, steer } from "./dom";
import { hitParts, inputSent, searchNotice } from "./format";
import type { InputAccepted, SearchResult } from "./models";
import type { Selection } from "./state";
import type { StackView } from "./stackview";

export function wireSteering(api: Api, selection: Selection, view: StackView): void {
  const setState = (executionState: "Paused" | "Running"): void => {
    const chosen = selection.current;
    if (!chosen) return;
    void steer(async () => {
      await api.post(`${stackPath(chosen.stack)}/state`, { executionState });
      return `${chosen.key}: ${executionState}`;
    });
  };
  byId("pause", HTMLButtonElement).addEventListener("click", () => setState("Paused"));
  byId("resume", HTMLButtonElement).addEventListener("click", () => setState("Running"));
  byId("controls", HTMLFormElement).addEventListener("submit", (event) => {
    event.preventDefault();
    const chosen = selection.current;
    if (!chosen) return;
    const message = byId("message", HTMLInputElement);
    const agent = byId("agent", HTMLSelectElement).value;
    void steer(async () => {
      const sent = await api.post<InputAccepted>(`${stackPath(chosen.stack)}/inputs`, {
        agent,
        content: message.value,
      });
      message.value = "";
      view.refreshState(chosen);
      return inputSent(sent);
    });
  });
}

export const SEARCH_HITS = 20;

/** The hits, best first, each its kind, ref, who wrote it and its text. */
export function wireSearch(api: Api, selection: Selection): void {
  byId("search", HTMLFormElement).addEventListener("submit", (event) => {
    event.preventDefault();
    const chosen = selection.current;
    if (!chosen) return;
    const list = byId("search-results", HTMLElement);
    const note = byId("search-notice", HTMLElement);
    const params = new URLSearchParams({
      q: byId("query", HTMLInputElement).value,
      limit: String(SEARCH_HITS),
    });
    const kind = byId("search-kind", HTMLSelectElement).value;
    if (kind) params.set("kind", kind);
    note.textContent = "searching…";
    note.className = "";
    void (async () => {
      try {
        const found = await api.get<SearchResult>(`${stackPath(chosen.stack)}/search?${params}`);
        if (!selection.isCurrent(chosen)) return;
        list.replaceChildren(
          ...found.items.map((hit) => {
            const entry = document.createElement("li");
            entry.dataset.id = hit.id;
            entry.dataset.kind = hit.kind;
            const { where, text } = hitParts(hit);
            const from = document.createElement("span");
            from.className = "hit";
            from.textContent = where;
            entry.append(from, text);
            return entry;
          }),
        );
        note.textContent = searchNotice(found);
      } catch (error) {
        if (selection.isCurrent(chosen)) {
          note.textContent = errorText(error);
          note.className = "error";
        }
      }
    })();
  });
}
