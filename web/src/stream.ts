/**
 * The API's live streams (Server-Sent Events), read through `fetch` by eventsource-client.
 *
 * Not the browser's EventSource: it can send neither the bearer token nor, on its first
 * request, a `Last-Event-ID` — and the page resumes each stack stream right after the
 * newest entry it has shown (the API takes the starting point from that header only).
 * The library parses the events, keeps the id of the last one and reconnects with it,
 * waiting what the server's `retry:` says.
 *
 * One policy is the page's own: an answer other than 200 (401, 403, a proxy's 502
 * while the API restarts) is retried like a dropped connection, never taken as the
 * stream's end, and what went wrong is said.
 */

import { createEventSource, type FetchLike } from "eventsource-client";

export interface Listener<T> {
  /** An event: its type (`message` when the server names none) and its JSON data. */
  event(type: string, data: T): void;
  /** The stream is open: the server answered 200. */
  open(): void;
  /** It failed or ended and is retried soon; `reason` says why. */
  retrying(reason: string): void;
}

export interface StreamRequest {
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  /** The id of the last event already shown: the stream starts right after it. */
  readonly after?: string;
}

export interface Stream {
  /** Stop for good: the connection is aborted and never made again. */
  close(): void;
}

const ENDED = "the stream ended";

export function subscribe<T>(
  request: StreamRequest,
  listener: Listener<T>,
  fetcher: FetchLike = (url, init) => fetch(url, init),
): Stream {
  let reason = ENDED;
  // A refusal becomes a failed request, so the library retries it after `retry:`.
  const answered: FetchLike = async (url, init) => {
    let response;
    try {
      response = await fetcher(url, init);
    } catch (error) {
      reason = error instanceof Error ? error.message : String(error);
      throw error;
    }
    if (response.status !== 200) {
      reason = `${request.path}: ${response.status}`;
      throw new Error(reason);
    }
    return response;
  };
  const source = createEventSource({
    url: request.path,
    headers: { ...request.headers },
    ...(request.after === undefined ? {} : { initialLastEventId: request.after }),
    fetch: answered,
    onConnect: () => {
      reason = ENDED;
      listener.open();
    },
    onScheduleReconnect: () => {
      listener.retrying(reason);
    },
    onMessage: (message) => {
      if (message.data) listener.event(message.event ?? "message", JSON.parse(message.data) as T);
    },
  });
  return { close: () => source.close() };
}
