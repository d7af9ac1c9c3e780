/**
 * Files a node reads again when they change (certificates, client tokens), so they rotate without a
 * restart: their modification times are checked every few seconds, and a new set is taken only if it
 * passes its check; a half-written or broken one keeps the last good set.
 */
import { readFileSync, statSync } from 'node:fs';
import { InvalidRequestError } from '../errors.js';

/** How often the files' modification times are checked. */
const RECHECK_MS = 5000;

/** Files by name, reloaded when any changes; a half-written rotation keeps the last good set. */
export class WatchedFiles<K extends string> {
  private contents!: Record<K, Buffer>;
  private stamp = '';
  private readonly listeners: Array<() => void> = [];
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly files: Record<K, string>,
    /** Checks a new set (e.g. builds a TLS context); throws to refuse it. */
    private readonly accept: (contents: Record<K, Buffer>) => void,
    private readonly onError: (err: Error) => void,
    what: string,
  ) {
    try {
      this.load();
    } catch (err) {
      throw new InvalidRequestError('invalid_config', `${what}: ${(err as Error).message}`);
    }
    this.timer = setInterval(() => {
      try {
        if (this.load()) for (const listener of this.listeners) listener();
      } catch (err) {
        this.onError(err as Error);
      }
    }, RECHECK_MS);
    this.timer.unref();
  }

  get current(): Record<K, Buffer> {
    return this.contents;
  }

  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }

  close(): void {
    clearInterval(this.timer);
  }

  /** Reads the files if they changed; true when a new set was taken. */
  private load(): boolean {
    const names = Object.keys(this.files) as K[];
    const stamp = names.map((k) => statSync(this.files[k]).mtimeMs).join(',');
    if (stamp === this.stamp) return false;
    const contents = Object.fromEntries(names.map((k) => [k, readFileSync(this.files[k])])) as Record<
      K,
      Buffer
    >;
    this.accept(contents);
    this.contents = contents;
    this.stamp = stamp;
    return true;
  }
}
