// The Node.js versions Atrium runs on, checked before any of its modules load: an ESM import
// of a missing built-in (zlib.crc32 came with 20.15 and 22.2) fails at link time with an
// obscure SyntaxError, so the check cannot live in the code it protects.
export const supportedNodeRange = '^20.15.0 || >=22.2.0';

/** Whether a Node.js version ("20.20.2", "v22.1.0") is one Atrium runs on. */
export function isSupportedNode(version) {
  const [major, minor] = version.replace(/^v/, '').split('.').map(Number);
  if (major === 20) return minor >= 15;
  if (major === 22) return minor >= 2;
  return major > 22;
}
