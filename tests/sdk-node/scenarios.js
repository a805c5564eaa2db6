// The official twilio Node SDK (npm `twilio`, unmodified) against a dialtone server: subaccount,
// API key, a client authenticated with the key, application, number, inbound calls and paging,
// errors as the SDK's RestException. Run by tests/interop/test_sdk_scenarios.py, which passes
// DIALTONE_URL, DIALTONE_ACCOUNT_SID, DIALTONE_AUTH_TOKEN and VOICE_URL in the environment.
//
// Protocol with the test: once the subaccount's number exists this prints one JSON line
// {"ready": {sub_sid, sub_token, number}} and waits for one line on stdin (the JSON list of the
// CallSids the test placed on the number); at the end it prints {"summary": ...}. Any failed check
// makes the exit code non-zero.
"use strict";

const readline = require("node:readline");
const twilio = require("twilio");

const BASE = mustEnv("DIALTONE_URL");
const MAIN_SID = mustEnv("DIALTONE_ACCOUNT_SID");
const MAIN_TOKEN = mustEnv("DIALTONE_AUTH_TOKEN");
const VOICE_URL = mustEnv("VOICE_URL");
const MISSING_CALL = "CA" + "0".repeat(32);
const NUMBER = "+15550004441";

const passed = [];
const failed = [];
const requests = { server: 0, elsewhere: [] };

function mustEnv(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`missing environment variable ${name}`);
    process.exit(2);
  }
  return v;
}

function check(name, ok, detail) {
  if (ok) {
    passed.push(name);
  } else {
    failed.push(name);
    console.error(`FAILED ${name}: ${JSON.stringify(detail)}`);
  }
}

// A client of the api domain sent to our server. Every request its HTTP client makes is counted,
// so the summary shows that all of them reached the server and none went to Twilio.
function client(username, password, accountSid) {
  const c = twilio(username, password, accountSid ? { accountSid } : undefined);
  c.api.baseUrl = BASE;
  const http = c.httpClient;
  const send = http.request.bind(http);
  http.request = (opts) => {
    if (opts.uri.startsWith(BASE + "/")) requests.server += 1;
    else requests.elsewhere.push(opts.uri);
    return send(opts);
  };
  return c;
}

// Runs fn, which must reject with the SDK's RestException carrying this code and status.
async function expectError(name, fn, code, status) {
  try {
    const value = await fn();
    check(name, false, { expected: { code, status }, got: value && value.sid });
  } catch (e) {
    check(name, e instanceof twilio.RestException && e.code === code && e.status === status, {
      type: e && e.constructor && e.constructor.name,
      code: e.code,
      status: e.status,
      message: e.message,
    });
  }
}

function nextLine() {
  const rl = readline.createInterface({ input: process.stdin });
  return new Promise((resolve, reject) => {
    rl.once("line", (line) => {
      resolve(line);
      rl.close();
    });
    rl.once("close", () => reject(new Error("stdin closed before the calls were placed")));
  });
}

async function main() {
  const parent = client(MAIN_SID, MAIN_TOKEN);

  const sub = await parent.api.v2010.accounts.create({ friendlyName: "SDK scenarios (node)" });
  check("subaccount sid", /^AC[0-9a-f]{32}$/.test(sub.sid) && sub.sid !== MAIN_SID, sub.sid);
  check("subaccount owner", sub.ownerAccountSid === MAIN_SID, sub.ownerAccountSid);
  check("subaccount active", sub.status === "active" && !!sub.authToken, sub.status);
  const fetched = await parent.api.v2010.accounts(sub.sid).fetch();
  check("parent fetches subaccount", fetched.friendlyName === "SDK scenarios (node)", fetched.friendlyName);

  const key = await parent.api.v2010.accounts(sub.sid).newKeys.create({ friendlyName: "scenario key" });
  check("key sid", /^SK[0-9a-f]{32}$/.test(key.sid), key.sid);
  check("key secret", typeof key.secret === "string" && key.secret.length > 0, key.secret);

  const child = client(key.sid, key.secret, sub.sid);
  // As on Twilio, a standard API key may not read the Accounts resource.
  try {
    await child.api.v2010.accounts(sub.sid).fetch();
    check("key cannot fetch account", false, "fetch succeeded");
  } catch (e) {
    check("key cannot fetch account", e instanceof twilio.RestException && e.status === 403,
      { code: e.code, status: e.status });
  }

  const app = await child.applications.create({
    friendlyName: "scenario app", voiceUrl: VOICE_URL, voiceMethod: "POST",
  });
  check("application", /^AP/.test(app.sid) && app.accountSid === sub.sid, app);
  check("application fetch", (await child.applications(app.sid).fetch()).voiceUrl === VOICE_URL);

  const pn = await child.incomingPhoneNumbers.create({ phoneNumber: NUMBER, voiceApplicationSid: app.sid });
  check("number", /^PN/.test(pn.sid) && pn.accountSid === sub.sid && pn.voiceApplicationSid === app.sid, pn);
  const numbers = await child.incomingPhoneNumbers.list();
  check("number list", numbers.length === 1 && numbers[0].sid === pn.sid, numbers.map((n) => n.sid));
  const mainNumbers = await parent.incomingPhoneNumbers.list();
  check("parent list excludes subaccount number", !mainNumbers.some((n) => n.sid === pn.sid));

  console.log(JSON.stringify({ ready: { sub_sid: sub.sid, sub_token: sub.authToken, number: NUMBER } }));
  const placed = JSON.parse(await nextLine());

  const page = await child.calls.page({ pageSize: 2 });
  check("first page of 2", page.instances.length === 2 && !!page.nextPageUrl, page.instances.length);
  const second = await page.nextPage();
  check("second page of 1", !!second && second.instances.length === 1 && !second.nextPageUrl,
    second && second.instances.length);
  const calls = await child.calls.list({ pageSize: 2 });
  const sids = calls.map((c) => c.sid).sort();
  check("calls listed", JSON.stringify(sids) === JSON.stringify(placed), { sids, placed });
  check("calls inbound completed",
    calls.every((c) => c.accountSid === sub.sid && c.direction === "inbound" && c.status === "completed"),
    calls.map((c) => [c.direction, c.status]));
  const seen = [];
  await child.calls.each({ pageSize: 2 }, (c) => seen.push(c.sid));
  check("calls each", seen.length === 3, seen);
  const one = await child.calls(calls[0].sid).fetch();
  check("call fetch", one.sid === calls[0].sid && one.to.replace("+", "") === NUMBER.replace("+", ""), one.to);
  check("no recordings", (await child.recordings.list()).length === 0);

  await expectError("missing call 20404", () => child.calls(MISSING_CALL).fetch(), 20404, 404);
  await expectError("missing recording 20404", () => child.recordings("RE" + "0".repeat(32)).fetch(), 20404, 404);
  const bad = client(MAIN_SID, "0".repeat(32));
  await expectError("bad token 20003", () => bad.calls.list(), 20003, 401);
  const badKey = client(key.sid, "wrong-secret", sub.sid);
  await expectError("bad key secret 20003", () => badKey.calls(MISSING_CALL).fetch(), 20003, 401);
  const parents = await parent.incomingPhoneNumbers.create({ phoneNumber: "+15550004442", voiceUrl: VOICE_URL });
  await expectError("child reads parent's number 20404",
    () => child.incomingPhoneNumbers(parents.sid).fetch(), 20404, 404);
}

main()
  .catch((e) => {
    failed.push("uncaught");
    console.error("uncaught:", e && e.stack, e && e.code, e && e.status);
  })
  .finally(() => {
    check("requests reached the server", requests.server > 0 && requests.elsewhere.length === 0, requests);
    console.log(JSON.stringify({
      summary: {
        passed: passed.length,
        failed,
        requests_to_server: requests.server,
        requests_elsewhere: requests.elsewhere.length,
        sdk_version: require("twilio/package.json").version,
      },
    }));
    process.exitCode = failed.length ? 1 : 0;
  });
