"""schemathesis (PyPI, pinned in tests/requirements.txt) against a running `dialtone`, driven by the
server's own /openapi.json: every operation, authenticated as the test account, with the checks
not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance
and response_headers_conformance, in all of schemathesis' phases (examples, coverage, fuzzing,
stateful) and both positive and negative data.

Two things are pinned so the run stays on this server and on these credentials:
- a hook (written next to the server log) sends every request to the test account's path and
  points every call's destination and URLs at 127.0.0.1:9 (discard: nothing answers), so a call
  created by the fuzzer can never reach anything beyond loopback;
- `POST /v1/AuthTokens/Promote` is left out: promoting a secondary token the fuzzer made would
  replace the auth token the run authenticates with, and every later request would be a 401.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import requests

EXAMPLES_PER_OPERATION = os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "15")
CHECKS = ",".join([
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
])

HOOKS = '''
import schemathesis

ACCOUNT = {account!r}
# Discard port on loopback: an INVITE or a webhook sent here reaches nothing.
SINK_URI = "sip:schemathesis@127.0.0.1:9"
SINK_URL = "http://127.0.0.1:9/schemathesis"
URL_FIELDS = ("Url", "FallbackUrl", "StatusCallback")


@schemathesis.hook
def before_call(context, case, kwargs):
    params = case.path_parameters
    if isinstance(params, dict) and "AccountSid" in params:
        params["AccountSid"] = ACCOUNT
    if case.method.upper() == "POST" and "/Calls" in case.path and isinstance(case.body, dict):
        if "To" in case.body:
            case.body["To"] = SINK_URI
        for name in URL_FIELDS:
            if isinstance(case.body.get(name), str) and case.body[name]:
                case.body[name] = SINK_URL
'''


def test_schemathesis_finds_no_server_error_and_no_schema_violation(dialtone, workdir):
    doc = requests.get(dialtone.http_url + "/openapi.json", timeout=10)
    assert doc.status_code == 200, doc.text
    operations = sum(1 for item in doc.json()["paths"].values() for _ in item)

    (workdir / "st_hooks.py").write_text(HOOKS.format(account=dialtone.account_sid))
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{workdir}{os.pathsep}{env.get('PYTHONPATH', '')}"
    env["SCHEMATHESIS_HOOKS"] = "st_hooks"
    cli = Path(sys.executable).with_name("schemathesis")
    command = [
        str(cli), "run", f"{dialtone.http_url}/openapi.json",
        "--auth", f"{dialtone.account_sid}:{dialtone.auth_token}",
        "--checks", CHECKS,
        "--max-examples", EXAMPLES_PER_OPERATION,
        "--exclude-operation-id", "UpdateAuthTokenPromotion",
        "--seed", "20100401",
        "--workers", "2",
        "--request-timeout", "20",
        "--report", "junit",
        "--report-dir", str(workdir / "schemathesis-report"),
        "--output-truncate", "false",
    ]
    print("$ " + " ".join(command))
    started = time.monotonic()
    run = subprocess.run(command, env=env, cwd=workdir, capture_output=True, text=True, timeout=400)
    elapsed = time.monotonic() - started
    output = run.stdout + run.stderr
    (workdir / "schemathesis.txt").write_text(output)
    summary = "\n".join(line for line in output.splitlines()
                        if re.search(r"(passed|failed|error|cases|Test cases|Operations|seconds|Seed)", line))
    print(f"schemathesis: {operations} operations in the document, exit {run.returncode}, "
          f"{elapsed:.0f} s\n{summary}")
    assert run.returncode == 0, output[-20000:]
    assert dialtone.alive(), dialtone.log_tail(60)
    assert not dialtone.log_lines(r"panicked"), dialtone.log_lines(r"panicked")
