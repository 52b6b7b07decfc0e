/**
 * The read API as the page calls it: its paths, and JSON reads and steering posts that
 * carry the caller's bearer token (RBAC decides on the API's side, as for kubectl).
 */

import type { ErrorResponse, StackSummary } from "./models";

/** A stack, as the fleet and the URL (`?stack=namespace/name`) name it. */
export interface StackKey {
  readonly namespace: string;
  readonly name: string;
}

/** `namespace/name`: the key rows, charts and the URL use. */
export function keyText(stack: StackKey): string {
  return `${stack.namespace}/${stack.name}`;
}

/** A `namespace/name` (from the URL), or null when it is not one. */
export function parseKey(text: string | null): StackKey | null {
  const parts = text?.split("/") ?? [];
  const [namespace, name] = parts;
  return parts.length === 2 && namespace && name ? { namespace, name } : null;
}

export function keyOf(summary: StackSummary): StackKey {
  return { namespace: summary.namespace, name: summary.name };
}

export const FLEET = "/api/v1/stacks";

/** Where a stack's reads, streams and steering live. */
export function stackPath(stack: StackKey): string {
  return `/api/v1/namespaces/${stack.namespace}/stacks/${stack.name}`;
}

/** The headers of every request: the bearer token when one was typed in. */
export function authHeaders(
  token: string,
  extra: Readonly<Record<string, string>> = {},
): Record<string, string> {
  return token ? { ...extra, Authorization: `Bearer ${token}` } : { ...extra };
}

function isErrorResponse(body: unknown): body is ErrorResponse {
  if (typeof body !== "object" || body === null || !("error" in body)) return false;
  const { error } = body;
  return typeof error === "object" && error !== null && "code" in error && "message" in error;
}

/** What a refused request says to people: the API's error body, else path and status. */
export function failure(path: string, status: number, body: unknown): string {
  return isErrorResponse(body) ? `${body.error.code}: ${body.error.message}` : `${path}: ${status}`;
}

export type Fetch = (input: string, init?: RequestInit) => Promise<Response>;

export class Api {
  constructor(
    readonly token: string,
    private readonly fetcher: Fetch = (input, init) => fetch(input, init),
  ) {}

  headers(extra: Readonly<Record<string, string>> = {}): Record<string, string> {
    return authHeaders(this.token, extra);
  }

  /** A read; a refusal throws with the path and status. */
  async get<T>(path: string): Promise<T> {
    const response = await this.fetcher(path, { headers: this.headers() });
    if (!response.ok) throw new Error(failure(path, response.status, null));
    return (await response.json()) as T;
  }

  /** A steering action; a refusal throws with the API's own message. */
  async post<T>(path: string, body: unknown): Promise<T> {
    const response = await this.fetcher(path, {
      method: "POST",
      body: JSON.stringify(body),
      headers: this.headers({ "Content-Type": "application/json" }),
    });
    const answer: unknown = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(failure(path, response.status, answer));
    return answer as T;
  }
}
