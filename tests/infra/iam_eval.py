"""A small, strict evaluator of IAM policy documents, for offline tests.

It decides one request against one document the way IAM does for a single
policy: an explicit Deny wins, otherwise an Allow whose Action, Resource or
Principal, and every Condition match allows, otherwise the request is denied.

Only what the documents of this project use is implemented; anything else
(an unknown condition operator, a policy variable, NotAction, NotPrincipal…)
raises, so a test can never pass because the evaluator skipped something.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

ALLOW = "ALLOW"
EXPLICIT_DENY = "EXPLICIT_DENY"
IMPLICIT_DENY = "IMPLICIT_DENY"


class Unsupported(Exception):
    """The document uses something this evaluator does not implement."""


@dataclass
class Request:
    action: str
    resource: str | None = None
    # For trust policies: {"Service": "..."} or {"Federated": "..."} or {"AWS": "..."}.
    principal: dict[str, str] | None = None
    # Request context keys. Values are strings or lists of strings.
    context: dict[str, object] = field(default_factory=dict)


def _as_list(value):
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [value]


def _wildcard_regex(pattern: str, case_sensitive: bool) -> re.Pattern:
    if "${" in pattern:
        raise Unsupported(f"policy variables are not supported: {pattern!r}")
    out = []
    for ch in pattern:
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), 0 if case_sensitive else re.IGNORECASE)


def wildcard_match(pattern: str, value: str, case_sensitive: bool = True) -> bool:
    return _wildcard_regex(pattern, case_sensitive).fullmatch(value) is not None


def _arn_like(pattern: str, value: str) -> bool:
    # ArnLike compares the six colon-separated fields one by one.
    p_parts = pattern.split(":", 5)
    v_parts = value.split(":", 5)
    if len(p_parts) != 6 or len(v_parts) != 6:
        return False
    return all(wildcard_match(p, v) for p, v in zip(p_parts, v_parts))


_STRING_OPERATORS = {
    "StringEquals": lambda want, got: want == got,
    "StringNotEquals": lambda want, got: want != got,
    "StringEqualsIgnoreCase": lambda want, got: want.lower() == got.lower(),
    "StringLike": lambda want, got: wildcard_match(want, got),
    "StringNotLike": lambda want, got: not wildcard_match(want, got),
    "ArnEquals": lambda want, got: want == got,
    "ArnLike": _arn_like,
    # Bool compares "true"/"false" (IAM accepts either letter case).
    "Bool": lambda want, got: want.lower() == got.lower(),
}

_NEGATED = {"StringNotEquals", "StringNotLike"}


def _condition_holds(operator: str, key: str, wanted, context: dict) -> bool:
    if operator.startswith(("ForAnyValue:", "ForAllValues:")):
        raise Unsupported(f"set operators are not supported: {operator}")
    if_exists = operator.endswith("IfExists")
    base = operator[: -len("IfExists")] if if_exists else operator
    wanted_values = [str(v) for v in _as_list(wanted)]
    present = key in context and context[key] is not None

    if base == "Null":
        if if_exists:
            raise Unsupported("NullIfExists is not a valid operator")
        if len(wanted_values) != 1 or wanted_values[0] not in ("true", "false"):
            raise Unsupported(f"Null takes 'true' or 'false', got {wanted!r}")
        return (not present) if wanted_values[0] == "true" else present

    if base not in _STRING_OPERATORS:
        raise Unsupported(f"condition operator {operator!r} is not supported")

    if not present:
        # A missing key never matches, except for the negated operators
        # (which are true) and the IfExists forms (which are true).
        return if_exists or base in _NEGATED

    got_values = _as_list(context[key])
    if len(got_values) != 1:
        raise Unsupported(f"multi-valued context key {key!r} needs a set operator")
    got = str(got_values[0])
    compare = _STRING_OPERATORS[base]
    if base in _NEGATED:
        # Negated operators: true only if the value matches none of them.
        return all(compare(w, got) for w in wanted_values)
    # Several values for one key are ORed.
    return any(compare(w, got) for w in wanted_values)


def conditions_hold(condition: dict | None, context: dict) -> bool:
    """Every operator, and every key under it, must hold (AND)."""
    if not condition:
        return True
    for operator, keys in condition.items():
        for key, wanted in keys.items():
            if not _condition_holds(operator, key, wanted, context):
                return False
    return True


def _action_matches(statement: dict, action: str) -> bool:
    if "NotAction" in statement:
        raise Unsupported("NotAction is not supported")
    # Action names are case-insensitive in IAM.
    return any(wildcard_match(p, action, case_sensitive=False) for p in _as_list(statement["Action"]))


def _resource_matches(statement: dict, resource: str | None) -> bool:
    if "NotResource" in statement:
        raise Unsupported("NotResource is not supported")
    if "Resource" not in statement:
        # Trust policies have no Resource element: the role itself.
        return resource is None
    if resource is None:
        raise Unsupported("the statement has a Resource but the request has none")
    return any(wildcard_match(p, resource) for p in _as_list(statement["Resource"]))


def _principal_matches(statement: dict, principal: dict | None) -> bool:
    if "NotPrincipal" in statement:
        raise Unsupported("NotPrincipal is not supported")
    if "Principal" not in statement:
        if principal is not None:
            raise Unsupported("an identity policy was given a principal")
        return True
    if principal is None:
        raise Unsupported("a trust policy needs a request principal")
    wanted = statement["Principal"]
    if wanted == "*":
        return True
    for kind, value in principal.items():
        if value in _as_list(wanted.get(kind)):
            return True
    return False


def _statement_applies(statement: dict, request: Request) -> bool:
    return (
        _action_matches(statement, request.action)
        and _resource_matches(statement, request.resource)
        and _principal_matches(statement, request.principal)
        and conditions_hold(statement.get("Condition"), request.context)
    )


def evaluate(document: dict, request: Request) -> str:
    if document.get("Version") != "2012-10-17":
        raise Unsupported("policy Version must be 2012-10-17")
    statements = _as_list(document["Statement"])
    for statement in statements:
        if statement["Effect"] not in ("Allow", "Deny"):
            raise Unsupported(f"bad Effect {statement['Effect']!r}")
    if any(s["Effect"] == "Deny" and _statement_applies(s, request) for s in statements):
        return EXPLICIT_DENY
    if any(s["Effect"] == "Allow" and _statement_applies(s, request) for s in statements):
        return ALLOW
    return IMPLICIT_DENY
