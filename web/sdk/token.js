// Reads what the SDK needs from a Twilio Access Token (a JWT): the identity and the times.
// The signature is the server's business; the browser only decodes the payload.

function base64UrlDecode(part) {
  const b64 = part.replace(/-/g, '+').replace(/_/g, '/');
  const padded = b64 + '='.repeat((4 - (b64.length % 4)) % 4);
  const binary = atob(padded);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return new TextDecoder().decode(bytes);
}

// Returns `{identity, exp, nbf, iat, grants}` or null when the token is not a readable JWT.
export function decodeToken(token) {
  if (typeof token !== 'string') return null;
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  let payload;
  try {
    payload = JSON.parse(base64UrlDecode(parts[1]));
  } catch (_) {
    return null;
  }
  if (!payload || typeof payload !== 'object') return null;
  const grants = payload.grants && typeof payload.grants === 'object' ? payload.grants : {};
  return {
    identity: typeof grants.identity === 'string' ? grants.identity : '',
    exp: typeof payload.exp === 'number' ? payload.exp : undefined,
    nbf: typeof payload.nbf === 'number' ? payload.nbf : undefined,
    iat: typeof payload.iat === 'number' ? payload.iat : undefined,
    grants,
  };
}
