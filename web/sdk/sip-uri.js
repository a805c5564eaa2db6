// Escaping of the user part of a SIP URI (RFC 3261 section 25.1: unreserved and
// user-unreserved characters stay, everything else is %-encoded as UTF-8).

const USER_CHAR = /[A-Za-z0-9\-_.!~*'()&=+$,;?/]/;

export function escapeUser(user) {
  let out = '';
  for (const ch of String(user)) {
    if (USER_CHAR.test(ch)) {
      out += ch;
    } else {
      for (const byte of new TextEncoder().encode(ch)) {
        out += '%' + byte.toString(16).toUpperCase().padStart(2, '0');
      }
    }
  }
  return out;
}

// The host of a ws:// or wss:// URL, without the port; IPv6 literals keep their brackets.
export function hostOf(url) {
  try {
    return new URL(url).hostname;
  } catch (_) {
    return '';
  }
}
