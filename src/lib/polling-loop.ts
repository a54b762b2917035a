/**
 * A background pass run again and again, pollMs after the previous one ends (never two at
 * once); a failed pass is reported and the next one still comes. stop() waits for the pass
 * under way, so that nothing is cut half-done at shutdown.
 */
export class PollingLoop {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;
  private stopped = false;

  constructor(private readonly pass: () => Promise<unknown>, private readonly pollMs: number, private readonly onError: (e: unknown) => void) {}

  start(): void {
    const tick = () => {
      if (this.stopped) return;
      this.running = this.pass()
        .catch(this.onError)
        .finally(() => {
          if (!this.stopped) this.timer = setTimeout(tick, this.pollMs);
        });
    };
    tick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
  }
}
