/**
 * Group sync: many callers need "everything written so far is durable", and one sync
 * (fsync of a WAL file, of a directory) that starts after a caller's write covers it.
 * Callers arriving while a sync runs share the next one instead of each paying their own.
 * Dependency-free, so that both storage/ and index/ can use it.
 */
export class GroupSync {
  private requested = 0;
  private done = 0;
  private running: Promise<void> | undefined;

  constructor(private readonly sync: () => Promise<void>) {}

  /** Resolves once a sync that started after this call has completed; rejects with its error. */
  async afterWrite(): Promise<void> {
    const ticket = ++this.requested;
    while (this.done < ticket) {
      if (!this.running) {
        const covers = this.requested;
        this.running = this.sync()
          .then(() => {
            this.done = Math.max(this.done, covers);
          })
          .finally(() => {
            this.running = undefined;
          });
      }
      await this.running;
    }
  }

  /** Waits for a sync in flight, ignoring its outcome (before closing what it syncs). */
  async idle(): Promise<void> {
    await this.running?.catch(() => {});
  }
}
