import { randomUUID } from 'node:crypto';

const uidPattern = /^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$/;

/** PS3.5 9.1: digits and dots, at most 64 characters, no empty component, no leading zero. */
export function isValidUID(s: string): boolean {
  return s.length > 0 && s.length <= 64 && uidPattern.test(s);
}

/** A new UID under the 2.25 root (ISO/IEC 9834-8): a random UUID as one decimal integer. */
export function newUID(): string {
  return `2.25.${BigInt(`0x${randomUUID().replaceAll('-', '')}`).toString(10)}`;
}
