/**
 * `items` mapped through `open`, in order, with up to `ahead` opens started beyond the one
 * being consumed: storage reads overlap the caller's use (a socket write) of earlier results.
 * A failed open is thrown when its turn comes, not before. When the consumer stops early
 * (return or throw), what was already opened ahead is handed to `dispose`.
 */
export async function* readAhead<T, R>(items: readonly T[], open: (item: T) => Promise<R>, ahead: number, dispose?: (result: R) => void): AsyncGenerator<[T, R]> {
  const pending: Array<Promise<R>> = [];
  let started = 0;
  try {
    for (const item of items) {
      while (started < items.length && pending.length <= ahead) {
        const next = open(items[started++]!);
        next.catch(() => {}); // observed when its turn comes
        pending.push(next);
      }
      yield [item, await pending.shift()!];
    }
  } finally {
    for (const next of pending) next.then((result) => dispose?.(result), () => {});
  }
}
