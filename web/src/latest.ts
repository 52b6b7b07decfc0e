/**
 * Reads that follow live events: at most one in flight, and then one more, for the
 * latest request made meanwhile (earlier ones are served by it). A busy stack sends
 * several trace entries a second; each would otherwise start the same reads again.
 *
 * A task says its own failures to the user; one that throws anyway is a bug: it goes to
 * `failed` (the console), and the requests made meanwhile are still served.
 */
export function latestOnly<T>(
  task: (request: T) => Promise<void>,
  failed: (error: unknown) => void = (error) => {
    console.error(error);
  },
): (request: T) => void {
  let running = false;
  let wanted: { request: T } | null = null;
  const serve = async (): Promise<void> => {
    while (wanted) {
      const next = wanted.request;
      wanted = null;
      try {
        await task(next);
      } catch (error) {
        failed(error);
      }
    }
    running = false;
  };
  return (request) => {
    wanted = { request };
    if (running) return;
    running = true;
    void serve();
  };
}
