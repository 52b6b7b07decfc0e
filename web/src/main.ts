/**
 * The live page's entry point: wires the state, the views and the streams to the shell
 * (static/index.html). esbuild bundles it, with what it imports, into static/app.js.
 */

import { Api, FLEET, keyText, parseKey } from "./api";
import { wireSearch, wireSteering } from "./controls";
import { byId, errorText } from "./dom";
import type { Page, StackSummary } from "./models";
import { Fleet, Selection } from "./state";
import { FleetView, Status } from "./fleetview";
import { StackView } from "./stackview";
import { subscribe } from "./stream";

const TOKEN_KEY = "agentstack-token";

function start(): void {
  const token = byId("token", HTMLInputElement);
  token.value = sessionStorage.getItem(TOKEN_KEY) ?? "";
  // Every request and stream carries the token: a new one starts the page afresh.
  token.addEventListener("change", () => {
    sessionStorage.setItem(TOKEN_KEY, token.value);
    location.reload();
  });
  const api = new Api(token.value);
  const fleet = new Fleet();
  const selection = new Selection();
  const status = new Status(fleet);
  const watcher = {
    open: () => status.live(),
    retrying: (reason: string) => status.show(`reconnecting: ${reason}`),
  };
  const stackView: StackView = new StackView(api, selection, watcher, () => fleetView.highlight());
  const fleetView: FleetView = new FleetView(
    fleet,
    selection,
    (stack) => void stackView.select(stack),
  );
  wireSteering(api, selection, stackView);
  wireSearch(api, selection);
  const show = (summary: StackSummary): void => {
    if (fleetView.show(summary)) stackView.ticked(keyText(summary));
  };

  // Subscribe first, then list: a change between the two shows up twice, never not at all.
  const fleetStream = subscribe<StackSummary>(
    { path: `${FLEET}/stream`, headers: api.headers() },
    {
      ...watcher,
      event: (type, s) => (type === "delete" ? fleetView.remove(keyText(s)) : show(s)),
    },
  );
  // Streams hold connections: close them when the page is left (or put in the
  // back/forward cache), and start afresh if it is shown again from that cache.
  addEventListener("pagehide", () => {
    fleetStream.close();
    stackView.close();
  });
  addEventListener("pageshow", (event) => {
    if (event.persisted) location.reload();
  });
  fleetView.drawChart();
  void (async () => {
    try {
      const list = await api.get<Page<StackSummary>>(`${FLEET}?limit=500`);
      list.items.forEach(show);
      status.live();
      const wanted = parseKey(new URLSearchParams(location.search).get("stack"));
      if (wanted) await stackView.select(wanted);
    } catch (error) {
      status.show(errorText(error));
    }
  })();
}

start();
