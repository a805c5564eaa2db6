// The official twilio Node SDK (npm `twilio`, unmodified) sending and reading text messages on a
// dialtone server bound to an SMSC: a number with an SmsUrl, a message sent from it, followed to
// `delivered` (the SMSC's receipt), found by the list filters (To, From, DateSent), redacted and
// deleted; refusals as the SDK's RestException with Twilio's codes. Run by
// tests/interop/test_sms.py, which passes DIALTONE_URL, DIALTONE_ACCOUNT_SID, DIALTONE_AUTH_TOKEN,
// SMS_URL, SITE (the number to create) and OWNER (where to send) in the environment, and checks
// at the SMSC that the text arrived. Prints {"summary": {passed, failed, sid}}; a failed check
// makes the exit code non-zero.
"use strict";

const twilio = require("twilio");

const env = (name) => {
  const v = process.env[name];
  if (!v) {
    console.error(`missing environment variable ${name}`);
    process.exit(2);
  }
  return v;
};
const BASE = env("DIALTONE_URL");
const SID = env("DIALTONE_ACCOUNT_SID");
const TOKEN = env("DIALTONE_AUTH_TOKEN");
const SMS_URL = env("SMS_URL");
const SITE = env("SITE");
const OWNER = env("OWNER");
const TEXT = process.env.TEXT || "Your booking starts Saturday at 9:00. Reply STOP to opt out.";

const passed = [];
const failed = [];
function check(name, ok, detail) {
  (ok ? passed : failed).push(name);
  if (!ok) console.error(`FAILED ${name}: ${JSON.stringify(detail)}`);
}

async function refusal(fn) {
  try {
    await fn();
    return null;
  } catch (e) {
    return e;
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  // Every request of the Api domain goes to the server under test.
  const client = twilio(SID, TOKEN);
  client.api.baseUrl = BASE;

  const number = await client.incomingPhoneNumbers.create({ phoneNumber: SITE, smsUrl: SMS_URL, smsMethod: "POST" });
  check("number has the SmsUrl", number.smsUrl === SMS_URL && number.smsMethod === "POST", number.smsUrl);

  const sent = await client.messages.create({ to: OWNER, from: SITE, body: TEXT });
  check("created queued", sent.status === "queued" && sent.sid.startsWith("SM"), sent.status);
  check("created shape", sent.to === OWNER && sent.from === SITE && sent.body === TEXT
    && sent.numSegments === "1" && sent.direction === "outbound-api" && sent.apiVersion === "2010-04-01"
    && sent.accountSid === SID && sent.numMedia === "0", sent);

  let fetched = null;
  for (let i = 0; i < 200; i++) {
    fetched = await client.messages(sent.sid).fetch();
    if (fetched.status === "delivered") break;
    await sleep(50);
  }
  check("delivered through the receipt", fetched.status === "delivered" && fetched.dateSent instanceof Date, fetched.status);

  const today = new Date();
  const byTo = await client.messages.list({ to: OWNER, from: SITE, limit: 20 });
  check("listed by To and From", byTo.some((m) => m.sid === sent.sid), byTo.map((m) => m.sid));
  const byDay = await client.messages.list({ dateSent: today, limit: 20 });
  check("listed by DateSent", byDay.some((m) => m.sid === sent.sid), byDay.map((m) => m.sid));
  const before = await client.messages.list({ dateSentBefore: new Date(Date.UTC(2000, 0, 1)), limit: 20 });
  check("none sent before 2000", before.length === 0, before.length);

  const redacted = await client.messages(sent.sid).update({ body: "" });
  check("redacted", redacted.body === "" && redacted.status === "delivered", redacted.body);

  const notOurs = await refusal(() => client.messages.create({ to: OWNER, from: "+15559998888", body: "x" }));
  check("From not ours: 21606", notOurs && notOurs.code === 21606 && notOurs.status === 400, notOurs && notOurs.code);
  const noBody = await refusal(() => client.messages.create({ to: OWNER, from: SITE }));
  check("no Body: 21602", noBody && noBody.code === 21602 && noBody.status === 400, noBody && noBody.code);
  const tooLong = await refusal(() => client.messages.create({ to: OWNER, from: SITE, body: "x".repeat(1601) }));
  check("1601 characters: 21617", tooLong && tooLong.code === 21617, tooLong && tooLong.code);

  const removed = await client.messages(sent.sid).remove();
  check("deleted", removed === true, removed);
  const gone = await refusal(() => client.messages(sent.sid).fetch());
  check("gone: 20404", gone && gone.status === 404 && gone.code === 20404, gone && gone.code);

  console.log(JSON.stringify({ summary: { passed, failed, sid: sent.sid } }));
  process.exit(failed.length ? 1 : 0);
}

main().catch((e) => {
  console.error(e);
  process.exit(3);
});
