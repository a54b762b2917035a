/**
 * The research mapping key: what encrypts the link between a pseudonym and the person it
 * stands for (AES-256-GCM), and keys the lookups that find a person's pseudonym again
 * without storing who they are in clear (HMAC-SHA-256).
 *
 * The key is 32 random bytes, hex, in a file: `ATRIUM_RESEARCH_KEY_FILE` names it, else
 * `<dataDir>/secrets/research-mapping.key`, made on first use (mode 0600). It is never
 * in the repository, the index nor the logs; several nodes share the same file. Losing it
 * loses the way back from pseudonyms to patients (which is what the trusted third party holds).
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';

export class ResearchKeyError extends Error {
  override readonly name = 'ResearchKeyError';
}

const keyFileName = 'research-mapping.key';

export function researchKeyFile(dataDir: string, env: NodeJS.ProcessEnv = process.env): string {
  return env['ATRIUM_RESEARCH_KEY_FILE'] ?? path.join(dataDir, 'secrets', keyFileName);
}

export class ResearchKeys {
  private constructor(private readonly key: Buffer) {}

  /** Reads the key file, or makes it when it does not exist yet. */
  static async open(file: string): Promise<ResearchKeys> {
    let text: string;
    try {
      text = (await readFile(file, 'utf8')).trim();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
      text = randomBytes(32).toString('hex');
      try {
        await writeFile(file, `${text}\n`, { mode: 0o600, flag: 'wx' });
      } catch (w) {
        if ((w as NodeJS.ErrnoException).code !== 'EEXIST') throw w;
        text = (await readFile(file, 'utf8')).trim(); // another node made it first
      }
    }
    if (!/^[0-9a-fA-F]{64}$/.test(text)) throw new ResearchKeyError(`research key file ${file}: 64 hexadecimal digits expected`);
    return new ResearchKeys(Buffer.from(text, 'hex'));
  }

  static fromKey(key: Buffer): ResearchKeys {
    if (key.length !== 32) throw new ResearchKeyError('research key: 32 bytes expected');
    return new ResearchKeys(Buffer.from(key));
  }

  /** AES-256-GCM of a JSON value, "v1.<iv>.<tag>.<ciphertext>" in base64url; `context` is authenticated, not stored. */
  seal(value: unknown, context: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv);
    cipher.setAAD(Buffer.from(context, 'utf8'));
    const body = Buffer.concat([cipher.update(JSON.stringify(value), 'utf8'), cipher.final()]);
    return ['v1', iv, cipher.getAuthTag(), body].map((p) => (typeof p === 'string' ? p : p.toString('base64url'))).join('.');
  }

  open<T>(sealed: string, context: string): T {
    const [version, iv, tag, body] = sealed.split('.');
    if (version !== 'v1' || iv === undefined || tag === undefined || body === undefined) throw new ResearchKeyError('sealed value: unknown format');
    const decipher = createDecipheriv('aes-256-gcm', this.key, Buffer.from(iv, 'base64url'));
    decipher.setAAD(Buffer.from(context, 'utf8'));
    decipher.setAuthTag(Buffer.from(tag, 'base64url'));
    try {
      return JSON.parse(Buffer.concat([decipher.update(Buffer.from(body, 'base64url')), decipher.final()]).toString('utf8')) as T;
    } catch {
      throw new ResearchKeyError('sealed value: does not open with this key');
    }
  }

  /** A keyed digest (HMAC-SHA-256), hex: finds a row again by what it must not show. */
  digest(label: string, value: string): Buffer {
    return createHmac('sha256', this.key).update(label).update('\0').update(value).digest();
  }
}
