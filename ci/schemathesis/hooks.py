"""schemathesis hooks (SCHEMATHESIS_HOOKS=hooks, loaded by ci/schemathesis.sh).

An Idempotency-Key that schemathesis generates validly is replaced by a fresh one per request:
the ledger answers a key reused with another body with 422 by design (the first body wins), a
rule between requests that no schema can state. Keys that are invalid by the schema are left as
generated, so the negative tests of the header still run.
"""
import re
import uuid

import schemathesis

VALID_KEY = re.compile(r"^[\x21-\x7E](?:[\t\x20-\x7E]{0,253}[\x21-\x7E])?$")


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    key = (case.headers or {}).get("Idempotency-Key")
    if isinstance(key, str) and VALID_KEY.match(key):
        case.headers["Idempotency-Key"] = "st-" + uuid.uuid4().hex
