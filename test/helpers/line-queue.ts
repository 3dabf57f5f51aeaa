// Test helper: the lines a test client has received and not yet taken, with a bounded wait for
// the next one. Shared by every raw client (CRLF lines, WebSocket frames, lines with fds).

export class LineQueue<T> {
  private readonly items: T[] = [];
  private waiters: (() => void)[] = [];
  private ended = false;

  push(item: T): void {
    this.items.push(item);
    this.wake();
  }

  /** No more lines will come (EOF or error): waiters see it at once. */
  end(): void {
    this.ended = true;
    this.wake();
  }

  get closed(): boolean {
    return this.ended;
  }

  get size(): number {
    return this.items.length;
  }

  /** Takes every line not yet taken. */
  drain(): T[] {
    return this.items.splice(0);
  }

  /** The next line; rejects with `closedError()` once closed and empty, or on timeout. */
  async next(timeoutMs: number, closedError: () => Error): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    while (this.items.length === 0) {
      if (this.ended) throw closedError();
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('timed out waiting for a line');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.items.shift() as T;
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
}
