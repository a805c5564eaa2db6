// Errors in the shape of Twilio's TwilioError: `code`, `message`, `name`, `description`,
// `explanation`, `originalError`. Codes follow Twilio's Voice SDK and Access Token codes, so
// code written against Twilio's SDK reads them the same way.

const NAMES = {
  20101: ['AccessTokenInvalid', 'Invalid Access Token'],
  20103: ['AccessTokenIssuerInvalid', 'Invalid Access Token issuer/subject'],
  20104: ['AccessTokenExpired', 'Access Token expired or expiration date invalid'],
  20105: ['AccessTokenNotYetValid', 'Access Token not yet valid'],
  20106: ['AccessTokenGrantsInvalid', 'Invalid Access Token grants'],
  20107: ['AccessTokenSignatureInvalid', 'Invalid Access Token signature'],
  20157: ['ExpirationTimeExceedsMaxTimeAllowed', 'Expiration Time in the Access Token Exceeds Maximum Time Allowed'],
  31000: ['GeneralError', 'General error'],
  31002: ['ConnectionDeclinedError', 'Connection declined'],
  31003: ['ConnectionTimeoutError', 'Connection timeout'],
  31005: ['ConnectionError', 'The signalling connection was unexpectedly closed'],
  31009: ['TransportError', 'No transport available to send or receive messages'],
  31201: ['AcquisitionFailedError', 'Could not access the microphone'],
  31208: ['PermissionDeniedError', 'The user denied access to the microphone'],
  31404: ['NotFound', 'The callee was not found'],
  31480: ['TemporarilyUnavailable', 'The callee is temporarily unavailable'],
  31486: ['BusyHere', 'The callee is busy'],
  31603: ['Decline', 'The callee declined the call'],
};

export class DialtoneError extends Error {
  constructor(code, message, originalError) {
    const [name, description] = NAMES[code] || ['GeneralError', 'General error'];
    super(message || description);
    this.code = code;
    this.name = name;
    this.description = description;
    this.explanation = message || description;
    this.causes = [];
    this.solutions = [];
    if (originalError !== undefined) this.originalError = originalError;
  }
}

// `X-Dialtone-Error: 20104 Access Token expired` -> code 20104 and its text.
export function parseDialtoneErrorHeader(value) {
  if (!value) return null;
  const m = /^\s*(\d{5})\s*(.*)$/.exec(value);
  if (!m) return null;
  return new DialtoneError(Number(m[1]), m[2].trim() || undefined);
}

// The error for a SIP final response that refused a REGISTER or an INVITE.
export function errorFromResponse(message) {
  const fromHeader = parseDialtoneErrorHeader(message.getHeader('X-Dialtone-Error'));
  if (fromHeader) return fromHeader;
  const status = message.statusCode;
  const text = `${status} ${message.reasonPhrase || ''}`.trim();
  if (status === 403) return new DialtoneError(20101, `Forbidden (${text})`);
  if (status === 404 || status === 480 || status === 486 || status === 603) {
    return new DialtoneError(31000 + status, text);
  }
  if (status === 408) return new DialtoneError(31003, text);
  if (status >= 500) return new DialtoneError(31000, text);
  return new DialtoneError(31002, text);
}

// getUserMedia's DOMException to Twilio's user-media codes.
export function errorFromMedia(err) {
  const name = err && err.name;
  if (name === 'NotAllowedError' || name === 'SecurityError' || name === 'PermissionDeniedError') {
    return new DialtoneError(31208, undefined, err);
  }
  return new DialtoneError(31201, err && err.message ? `Could not access the microphone: ${err.message}` : undefined, err);
}
