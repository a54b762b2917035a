// The Node.js versions Atrium runs on, checked before any of its modules load: an ESM import
// of a missing built-in (zlib.crc32 came with 20.15 and 22.2) fails at link time with an
// obscure SyntaxError, so the check cannot live in the code it protects. The floor is the
// one of the portal's build (vite and rolldown need 20.19 or 22.12, where require() of an
// ES module is unflagged): one range for the whole product, as package.json engines says.
export const supportedNodeRange = '^20.19.0 || >=22.12.0';

/** Whether a Node.js version ("20.20.2", "v22.1.0") is one Atrium runs on. */
export function isSupportedNode(version) {
  const [major, minor] = version.replace(/^v/, '').split('.').map(Number);
  if (major === 20) return minor >= 19;
  if (major === 22) return minor >= 12;
  return major > 22;
}
