"""Hooks of the contract fuzzer (scripts/contract-fuzz.sh), for what an OpenAPI document cannot say.

Each hook names the rule it stands for; everything else the fuzzer finds fails the run.
"""

import json
import os
import re

import schemathesis
from schemathesis import GenerationMode

# The id of the platform token the fuzzer runs with (set by scripts/contract-fuzz.sh).
OWN_TOKEN_ID = os.environ.get("SLUICE_FUZZ_TOKEN_ID", "")


@schemathesis.hook
def filter_case(context, case):
    """Cases that are not sent.

    - A cursor is only valid as the `nextCursor` of the same list: the document gives its
      syntax, but a well-formed cursor the API did not return is refused (400). Made-up cursors
      are still sent as negative data.
    - The fuzzer does not revoke the token it runs with (it learns its id from the token list):
      every request after that would answer 401.
    """
    if case.operation.label == "DELETE /v1/platform/tokens/{id}":
        if (case.path_parameters or {}).get("id") == OWN_TOKEN_ID:
            return False
    if case.meta is None or case.meta.generation.mode != GenerationMode.POSITIVE:
        return True
    return "cursor" not in (case.query or {})


# Rules of the specs that no JSON Schema keyword can state, as (field, words of the message,
# method or ""): 422 `validation-failed` naming only these fields is the server doing its job,
# not a disagreement with the document.
SEMANTIC_RULES = [
    # CEL expressions must compile within their limits; field paths follow the CEL grammar.
    (r"spec\.filter", ""),
    (r"spec\.projection\.expression", ""),
    (r"spec\.projection\.fields\[\d+\]\.path", ""),
    # Sinks must not loop into the source stream nor reach reserved subjects or addresses.
    (r"spec\.sinks\[\d+\]\.nats\.subject", ""),
    (r"spec\.sinks\[\d+\]\.jetstream\.stream", "source stream"),
    (r"spec\.sinks\[\d+\]\.kafka\.stream", "source stream"),
    (r"spec\.sinks\[\d+\]\.(http|objectStore)\.url", ""),
    (r"spec\.sinks\[\d+\]\.name", "duplicate sink name"),
    (r"spec\.deadLetter\.stream", "source stream"),
    # An IP block must be a network address, and exceptions must lie inside it.
    (r"spec\.isolation\.extraEgress\[\d+\]\.(cidr|except\[\d+\])", ""),
    # What cannot change once set: a pipeline's source, a stream's broker; partitions only grow.
    (r"spec\.source\.stream", "immutable"),
    (r"spec\.partitions", ""),
    (r"spec\.broker", "immutable"),
    # Reserved tenant names.
    (r"name", "reserved"),
    # A merge patch merges into the current projection: whether the result has exactly one of
    # `fields` and `expression` depends on what is there.
    (r"spec\.projection", "exactly one", "PATCH"),
]


def _problem(response):
    try:
        return json.loads(response.content)
    except (ValueError, AttributeError):
        return {}


def _semantic(problem, method):
    errors = problem.get("errors") or []
    if not problem.get("type", "").endswith("/validation-failed") or not errors:
        return False

    def explained(error):
        for field, words, *only in SEMANTIC_RULES:
            if only and only[0] != method:
                continue
            if re.fullmatch(field, error.get("field", "")) and words in error.get("message", ""):
                return True
        return False

    return all(explained(e) for e in errors)


@schemathesis.hook
def filter_failure(context, failure, case, response):
    """Refusals of valid requests for reasons the document cannot state.

    - `Idempotency-Key` reused with a different body (422 `idempotency-key-reused`): the
      generator sends the same key with many bodies.
    - The rules in SEMANTIC_RULES (422 `validation-failed`).
    """
    if failure.code != "ST202":
        return True
    problem = _problem(response)
    if problem.get("type", "").endswith("/idempotency-key-reused"):
        return False
    return not _semantic(problem, case.method.upper())
