// dialtone.js: Twilio Voice JS SDK 2.x-shaped calling for Dialtone, over SIP.js.
// The bundle (dist/dialtone.js) sets `window.Dialtone = { Device, Call }`.

import { Device } from './device.js';
import { Call } from './call.js';

export { Device, Call };

if (typeof window !== 'undefined') {
  window.Dialtone = { Device, Call };
}
