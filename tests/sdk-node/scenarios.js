// The official twilio Node SDK (npm `twilio`, unmodified) against a dialtone server: subaccount,
// API key, a client authenticated with the key, application, number, inbound calls and paging,
// errors as the SDK's RestException; then queues and conferences with live calls in them (queue
// CRUD, members in order, dequeue into a document; conferences listed with filters, fetched,
// participants listed, muted, kicked, the room ended). Run by tests/interop/test_sdk_scenarios.py,
// which passes DIALTONE_URL, DIALTONE_ACCOUNT_SID, DIALTONE_AUTH_TOKEN, VOICE_URL (the
// subaccount's app), QUEUE_VOICE_URL (a document that <Enqueue>s into QUEUE_NAME), ROOM_VOICE_URL
// (a document that <Dial>s into the conference ROOM_NAME) and DEQUEUE_URL (the document a dequeued
// member is sent to) in the environment.
//
// Protocol with the test: once the subaccount's number, the queue and the main account's two
// numbers exist this prints one JSON line
// {"ready": {sub_sid, sub_token, number, queue_sid, queue_number, room_number}} and waits for one
// line on stdin: {"calls": [the CallSids placed on the subaccount's number, sorted], "queue": [the
// CallSids waiting in the queue, in order of arrival], "room": [the CallSids in the room]}, sent
// while the queue and room calls are still up. At the end it prints {"summary": ...}. Any failed
// check makes the exit code non-zero.
"use strict";

const readline = require("node:readline");
const twilio = require("twilio");

const BASE = mustEnv("DIALTONE_URL");
const MAIN_SID = mustEnv("DIALTONE_ACCOUNT_SID");
const MAIN_TOKEN = mustEnv("DIALTONE_AUTH_TOKEN");
const VOICE_URL = mustEnv("VOICE_URL");
const QUEUE_VOICE_URL = mustEnv("QUEUE_VOICE_URL");
const ROOM_VOICE_URL = mustEnv("ROOM_VOICE_URL");
const DEQUEUE_URL = mustEnv("DEQUEUE_URL");
const QUEUE_NAME = mustEnv("QUEUE_NAME");
const ROOM_NAME = mustEnv("ROOM_NAME");
const MISSING_CALL = "CA" + "0".repeat(32);
const MISSING_QUEUE = "QU" + "0".repeat(32);
const MISSING_CONFERENCE = "CF" + "0".repeat(32);
const NUMBER = "+15550004441";
const QUEUE_NUMBER = "+15550004451";
const ROOM_NUMBER = "+15550004452";

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

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Polls fn until it returns something truthy (that value), or undefined after timeoutMs.
async function waitFor(fn, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) return undefined;
    await sleep(200);
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

  const queue = await queueCrud(parent);
  await parent.incomingPhoneNumbers.create({ phoneNumber: QUEUE_NUMBER, voiceUrl: QUEUE_VOICE_URL });
  await parent.incomingPhoneNumbers.create({ phoneNumber: ROOM_NUMBER, voiceUrl: ROOM_VOICE_URL });

  console.log(JSON.stringify({
    ready: {
      sub_sid: sub.sid, sub_token: sub.authToken, number: NUMBER,
      queue_sid: queue.sid, queue_number: QUEUE_NUMBER, room_number: ROOM_NUMBER,
    },
  }));
  const live = JSON.parse(await nextLine());
  const placed = live.calls;

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

  await queueMembers(parent, queue, live.queue);
  await conference(parent, live.room);
}

// Queues: create (with and without MaxSize), list, fetch, update; a taken name is refused.
async function queueCrud(api) {
  const queue = await api.queues.create({ friendlyName: QUEUE_NAME, maxSize: 10 });
  check("queue create", /^QU[0-9a-f]{32}$/.test(queue.sid) && queue.accountSid === MAIN_SID &&
    queue.friendlyName === QUEUE_NAME && queue.maxSize === 10 && queue.currentSize === 0 &&
    queue.averageWaitTime === 0, queue.toJSON());
  const spare = await api.queues.create({ friendlyName: "node-spare" });
  check("queue default max size", spare.maxSize === 1000, spare.maxSize);
  const listed = (await api.queues.list()).map((q) => [q.sid, q.friendlyName]).sort();
  check("queue list", same(listed, [[queue.sid, QUEUE_NAME], [spare.sid, "node-spare"]].sort()), listed);
  const fetched = await api.queues(queue.sid).fetch();
  check("queue fetch", fetched.sid === queue.sid && fetched.friendlyName === QUEUE_NAME && fetched.maxSize === 10,
    fetched.toJSON());
  const updated = await api.queues(queue.sid).update({ maxSize: 5 });
  check("queue update", updated.maxSize === 5 && updated.friendlyName === QUEUE_NAME, updated.toJSON());
  check("queue update read back", (await api.queues(queue.sid).fetch()).maxSize === 5);
  const renamed = await api.queues(spare.sid).update({ friendlyName: "node-spare-2" });
  check("queue rename", renamed.friendlyName === "node-spare-2" && renamed.maxSize === 1000, renamed.toJSON());
  await expectError("queue name taken 400", () => api.queues.create({ friendlyName: QUEUE_NAME }), 20002, 400);
  check("spare queue deleted", (await api.queues(spare.sid).remove()) === true);
  await expectError("missing queue 20404", () => api.queues(MISSING_QUEUE).fetch(), 20404, 404);
  await expectError("missing queue update 20404", () => api.queues(MISSING_QUEUE).update({ maxSize: 2 }), 20404, 404);
  return queue;
}

// Three callers wait in the queue, in order of arrival (`waiting`).
async function queueMembers(api, queue, waiting) {
  const q = api.queues(queue.sid);
  const stats = await q.fetch();
  check("queue current size", stats.currentSize === 3, stats.currentSize);
  check("queue average wait", Number.isInteger(stats.averageWaitTime) && stats.averageWaitTime >= 1 &&
    stats.averageWaitTime <= 30, stats.averageWaitTime);
  const members = await q.members.list();
  check("members in order", same(members.map((m) => m.callSid), waiting), { got: members.map((m) => m.callSid), waiting });
  check("member positions", same(members.map((m) => m.position), [1, 2, 3]), members.map((m) => m.position));
  const waits = members.map((m) => m.waitTime);
  check("member waits", waits.every((w, i) => Number.isInteger(w) && (i === 0 || w <= waits[i - 1])) &&
    waits[2] >= 1, waits);
  check("member dates", members.every((m) => m.dateEnqueued instanceof Date && !isNaN(m.dateEnqueued) &&
    m.queueSid === queue.sid), members.map((m) => m.dateEnqueued));
  const second = await q.members(waiting[1]).fetch();
  check("member fetch by CallSid", second.callSid === waiting[1] && second.position === 2, second.toJSON());
  const front = await q.members("Front").fetch();
  check("member fetch Front", front.callSid === waiting[0] && front.position === 1, front.toJSON());
  await expectError("queue with callers not deleted", () => q.remove(), 20001, 400);

  const gone = await q.members("Front").update({ url: DEQUEUE_URL, method: "GET" });
  check("dequeue Front", gone.callSid === waiting[0] && gone.position === 1, gone.toJSON());
  const left = await waitFor(async () => {
    const ms = await q.members.list();
    return ms.length === 2 ? ms : undefined;
  }, 10000);
  check("front left the members", !!left && same(left.map((m) => [m.callSid, m.position]),
    [[waiting[1], 1], [waiting[2], 2]]), left && left.map((m) => [m.callSid, m.position]));
  await expectError("dequeued member 20404", () => q.members(waiting[0]).fetch(), 20404, 404);
  for (const sid of [waiting[1], waiting[2]]) {
    const m = await q.members(sid).update({ url: DEQUEUE_URL });
    check(`dequeue ${sid}`, m.callSid === sid && m.position === 1, m.toJSON());
  }
  const empty = await waitFor(async () => (await q.fetch()).currentSize === 0, 10000);
  check("queue empty", !!empty && (await q.members.list()).length === 0);
  await expectError("Front of an empty queue 20404", () => q.members("Front").fetch(), 20404, 404);
  check("empty queue deleted", (await q.remove()) === true);
  await expectError("deleted queue 20404", () => q.fetch(), 20404, 404);
}

// Three callers talk in the room (`inRoom`).
async function conference(api, inRoom) {
  const found = await waitFor(async () => {
    const cs = await api.conferences.list({ status: "in-progress", friendlyName: ROOM_NAME });
    return cs.length ? cs : undefined;
  }, 10000);
  check("conference listed in progress", !!found && found.length === 1, found && found.map((c) => c.sid));
  if (!found) return;
  const conf = found[0];
  check("conference sid", /^CF[0-9a-f]{32}$/.test(conf.sid) && conf.accountSid === MAIN_SID, conf.sid);
  const sids = async (opts) => (await api.conferences.list(opts)).map((c) => c.sid);
  check("conference filter name", same(await sids({ friendlyName: "no such room" }), []));
  check("conference filter completed", same(await sids({ status: "completed" }), []));
  const day = new Date(Date.UTC(conf.dateCreated.getUTCFullYear(), conf.dateCreated.getUTCMonth(),
    conf.dateCreated.getUTCDate()));
  check("conference filter date", same(await sids({ dateCreated: day }), [conf.sid]));
  check("conference filter date before", same(await sids({ dateCreatedBefore: new Date(day - 86400000) }), []));
  const room = api.conferences(conf.sid);
  const fetched = await room.fetch();
  check("conference fetch", fetched.friendlyName === ROOM_NAME && fetched.status === "in-progress" &&
    fetched.reasonConferenceEnded === null && !!fetched.subresourceUris.participants, fetched.toJSON());

  const parts = await waitFor(async () => {
    const ps = await room.participants.list();
    return ps.length === 3 ? ps : undefined;
  }, 10000);
  check("participants listed", !!parts && same(parts.map((p) => p.callSid).sort(), [...inRoom].sort()),
    parts && parts.map((p) => p.callSid));
  check("participants connected", !!parts && parts.every((p) => p.status === "connected" &&
    p.conferenceSid === conf.sid && p.muted === false && p.hold === false), parts && parts.map((p) => p.toJSON()));
  const [a, b, c] = inRoom;
  const muted = await room.participants(a).update({ muted: true });
  check("participant muted", muted.callSid === a && muted.muted === true, muted.toJSON());
  check("participant muted read back", (await room.participants(a).fetch()).muted === true);
  check("other participant not muted", (await room.participants(b).fetch()).muted === false);
  check("participants filter muted",
    same((await room.participants.list({ muted: true })).map((p) => p.callSid), [a]));
  check("participant kicked", (await room.participants(c).remove()) === true);
  const two = await waitFor(async () => {
    const ps = (await room.participants.list()).map((p) => p.callSid).sort();
    return same(ps, [a, b].sort()) ? ps : undefined;
  }, 10000);
  check("kicked participant left", !!two);
  await expectError("kicked participant 20404", () => room.participants(c).fetch(), 20404, 404);

  const ended = await room.update({ status: "completed" });
  check("conference ended", ended.status === "completed", ended.status);
  const after = await room.fetch();
  check("conference end reason", after.status === "completed" &&
    after.reasonConferenceEnded === "conference-ended-via-api", after.toJSON());
  check("ended room has no participants", (await room.participants.list()).length === 0);
  check("conference filter completed after end", same(await sids({ status: "completed" }), [conf.sid]));
  await expectError("missing conference 20404", () => api.conferences(MISSING_CONFERENCE).fetch(), 20404, 404);
  await expectError("missing conference participant 20404",
    () => api.conferences(MISSING_CONFERENCE).participants(a).fetch(), 20404, 404);
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
