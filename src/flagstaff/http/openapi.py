"""The OpenAPI 3.0 document of the JSON API, served at ``/api/v1/openapi.json``.

Written by hand next to the handlers in :mod:`flagstaff.http.api`; the contract
tests (schemathesis, ``tests/http/test_http_contract.py``) generate requests from it
and check every answer against it, so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from flagstaff.decision import Reason

__all__ = ["document"]

_ANY: dict[str, Any] = {
    "description": "Any JSON value: a flag document is a string, number, boolean or object."
}
_STR_OR_NULL = {"type": "string", "nullable": True}
_NUM_OR_NULL = {"type": "number", "nullable": True}
_INT_OR_NULL = {"type": "integer", "nullable": True}
_TEXT = {"type": "string", "nullable": True, "minLength": 1, "maxLength": 1024}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return out


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Malformed request (not JSON, wrong field types, bad parameter).",
        401: "No, malformed, unknown or revoked token.",
        403: "The token's scope is too low (or a session request lacks its CSRF token).",
        404: "No such flag (or segment, version, or token).",
        409: "Compare-and-set failed: the flag changed (or exists already). Carries current_version. "
        "For a delete: flags still use it, listed in used_by.",
        413: "The request body is too large.",
        415: "Unsupported Content-Encoding (gzip or none).",
        501: "Not configured here (a forcing token needs FLAGSTAFF_FORCE_KEY on the server).",
        422: "The flag (or segment) document, or its name, is invalid: problems lists each one.",
        429: "Too many failed authentication attempts (from this address, or from all).",
        503: "The store (or, for tokens, the token database) is unavailable.",
        504: "Outcome unknown (code outcome_unknown): the store's answer to the write was lost; "
        "it may have been applied. Retry with the same If-Match.",
    }
    return {str(c): _json(_ref("Error"), text[c]) for c in codes}


_AUTH = (401, 403, 429)
_ETAG = {"ETag": {"description": "The flag's version, quoted.", "schema": {"type": "string"}}}
_NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "description": "The flag's name.",
    "schema": {"type": "string", "minLength": 1},
}
_SEGMENT_NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "description": "The segment's name (its store key is segment:NAME).",
    "schema": {"type": "string", "minLength": 1},
}
_IF_MATCH = {
    "name": "If-Match",
    "in": "header",
    "required": False,
    "description": 'Only if the flag is at this version (its ETag, e.g. "3"); else 409.',
    "schema": {"type": "string"},
}
_LIMIT = {
    "name": "limit",
    "in": "query",
    "required": False,
    "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
}


_KINDS = ("temporary", "permanent", "release", "experiment", "ops", "permission")
_COMMENT = {"type": "string", "maxLength": 500, "description": "Why: recorded in history with the change."}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _patch_ops() -> list[dict[str, Any]]:
    def op(name: str, props: dict[str, Any] | None = None, required: tuple[str, ...] = ()) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {"op": {"type": "string", "enum": [name]}, **(props or {}), "comment": _COMMENT},
            "required": ["op", *required],
            "additionalProperties": False,
        }

    names = {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1}
    return [
        op("kill"),
        op("enable", {"everyone": {"type": "boolean"}}),
        op(
            "set_percentage",
            {"percentage": {"type": "number", "minimum": 0, "maximum": 100}},
            ("percentage",),
        ),
        op("add_users", {"users": names}, ("users",)),
        op("remove_users", {"users": names}, ("users",)),
        op("add_groups", {"groups": names}, ("groups",)),
        op("remove_groups", {"groups": names}, ("groups",)),
        op(
            "set_variants",
            {
                "variants": {
                    "type": "object",
                    "minProperties": 1,
                    "additionalProperties": {"type": "number", "minimum": 0, "maximum": 100},
                }
            },
            ("variants",),
        ),
        op("archive"),
        op("restore"),
    ]


_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "properties": {
            "error": {"type": "string"},
            "problems": {"type": "array", "items": _ref("Problem")},
            "current_version": _INT_OR_NULL,
            "used_by": {
                "type": "array",
                "items": {"type": "string"},
                "description": "(delete refused) the flags that still use the segment or flag.",
            },
            "segment": {"type": "string", "description": "(a segment's key under /flags) where it is."},
        },
        "required": ["error"],
    },
    "Problem": {
        "type": "object",
        "properties": {"path": {"type": "string"}, "message": {"type": "string"}},
        "required": ["path", "message"],
    },
    "Flag": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "integer"},
            "document": _ANY,
            "state": {"type": "string", "enum": ["on", "off", "partial", "invalid"]},
            "percentage": _NUM_OR_NULL,
            "description": _STR_OR_NULL,
            "owner": _STR_OR_NULL,
            "kind": {"type": "string", "enum": list(_KINDS), "nullable": True},
            "tags": {"type": "array", "items": {"type": "string"}},
            "archived": {"type": "boolean", "description": "Retired: off for everyone, kept to restore."},
            "problems": {"type": "array", "items": _ref("Problem")},
            "updated_at": {**_NUM_OR_NULL, "description": "Epoch seconds of the last change."},
            "updated_by": _STR_OR_NULL,
            "stale": {"type": "boolean", "description": "Temporary and unchanged for more than N days."},
            "changed": {"type": "boolean", "description": "(writes) whether the write changed anything."},
            "rolled_back_to": {"type": "integer"},
        },
        "required": ["name", "version", "document", "state", "tags", "updated_at", "stale"],
    },
    "Segment": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "key": {"type": "string", "description": "The store key: segment:NAME."},
            "version": {"type": "integer"},
            "document": _ANY,
            "valid": {"type": "boolean"},
            "description": _STR_OR_NULL,
            "owner": _STR_OR_NULL,
            "tags": {"type": "array", "items": {"type": "string"}},
            "holdout": {"type": "boolean", "description": "Members see no experiment."},
            "used_by": {
                "type": "array",
                "items": {"type": "string"},
                "description": "The flags that name the segment.",
            },
            "problems": {"type": "array", "items": _ref("Problem")},
            "updated_at": {**_NUM_OR_NULL, "description": "Epoch seconds of the last change."},
            "updated_by": _STR_OR_NULL,
            "changed": {"type": "boolean", "description": "(writes) whether the write changed anything."},
        },
        "required": ["name", "key", "version", "document", "valid", "tags", "holdout", "used_by"],
    },
    "SegmentList": {
        "type": "object",
        "properties": {
            "segments": {"type": "array", "items": _ref("Segment")},
            "revision": {"type": "integer"},
        },
        "required": ["segments", "revision"],
    },
    "FlagList": {
        "type": "object",
        "properties": {"flags": {"type": "array", "items": _ref("Flag")}, "revision": {"type": "integer"}},
        "required": ["flags", "revision"],
    },
    "NewFlag": {
        "type": "object",
        "properties": {
            "name": {
                "type": "string",
                "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$",
                "description": "A new flag's name (docs/flags.md); a look-alike of an existing one is 422.",
            },
            "document": _ANY,
            "comment": _COMMENT,
        },
        "required": ["name", "document"],
        "additionalProperties": False,
    },
    "FlagDocument": {
        "type": "object",
        "properties": {"document": _ANY, "comment": _COMMENT},
        "required": ["document"],
        "additionalProperties": False,
    },
    "Patch": {"oneOf": _patch_ops()},
    "ValidateRequest": {
        "type": "object",
        "description": "A name segment:NAME checks a segment document; any other, a flag document.",
        "properties": {"name": {"type": "string"}, "document": _ANY},
        "required": ["document"],
        "additionalProperties": False,
    },
    "ValidateResult": {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}, "problems": {"type": "array", "items": _ref("Problem")}},
        "required": ["ok", "problems"],
    },
    "HistoryEntry": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "revision": {"type": "integer"},
            "version": _INT_OR_NULL,
            "at": {"type": "number"},
            "action": {"type": "string", "enum": ["create", "update", "delete"]},
            "author": _STR_OR_NULL,
            "actor": _STR_OR_NULL,
            "token_id": _STR_OR_NULL,
            "request_id": _STR_OR_NULL,
            "comment": {**_STR_OR_NULL, "description": "Why, as written with the change."},
            "out_of_band": {
                "type": "boolean",
                "description": "Made straight in the store, not through flagstaff.",
            },
            "before": _ANY,
            "after": _ANY,
        },
        "required": ["name", "revision", "at", "action", "out_of_band"],
    },
    "History": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "entries": {"type": "array", "items": _ref("HistoryEntry")},
        },
        "required": ["entries"],
    },
    "Diff": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "from": _ref("VersionedDocument"),
            "to": _ref("VersionedDocument"),
            "changes": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "path": {"type": "string"},
                        "change": {"type": "string", "enum": ["added", "removed", "changed"]},
                        "before": _ANY,
                        "after": _ANY,
                    },
                    "required": ["path", "change"],
                },
            },
            "unified": {"type": "string"},
        },
        "required": ["name", "from", "to", "changes", "unified"],
    },
    "VersionedDocument": {
        "type": "object",
        "properties": {"version": {"type": "integer"}, "document": _ANY},
        "required": ["version", "document"],
    },
    "Rollback": {
        "type": "object",
        "properties": {"version": {"type": "integer", "minimum": 1}, "comment": _COMMENT},
        "required": ["version"],
        "additionalProperties": False,
    },
    "Context": {
        "type": "object",
        "nullable": True,
        "description": "Who is asking. Keys beyond these become custom attributes "
        "(rules, segments and bucket_by read them). OpenFeature's targetingKey is the user id.",
        "properties": {
            "targetingKey": {**_STR_OR_NULL, "description": "OpenFeature's targeting key: the user id."},
            "user_id": _STR_OR_NULL,
            "user_name": _STR_OR_NULL,
            "groups": {"type": "array", "items": {"type": "string"}},
            "logged_in": {"type": "boolean"},
            "cookie_id": _STR_OR_NULL,
            "features": {"type": "array", "items": {"type": "string"}},
            "subdomain": _STR_OR_NULL,
            "location": _STR_OR_NULL,
            "oauth_client": _STR_OR_NULL,
            "time": {"type": "number", "description": "Request time, epoch seconds (default: now)."},
            "attributes": {"type": "object"},
        },
    },
    "Event": {
        "type": "object",
        "description": "An exposure (flag, variant, experiment_id), a metric event (name, value) "
        "or a flag's usage (flag; value: evaluations counted up to time, its last seen); "
        "key is the bucketing key (user id, else cookie id).",
        "required": ["kind", "time"],
        "properties": {
            "kind": {"type": "string", "enum": ["exposure", "track", "usage"]},
            "time": {"type": "number", "description": "Epoch seconds (UTC)."},
            "key": _TEXT,
            "flag": _TEXT,
            "variant": _TEXT,
            "experiment_id": _INT_OR_NULL,
            "revision": _INT_OR_NULL,
            "name": _TEXT,
            "value": _NUM_OR_NULL,
            "attributes": {"type": "object", "nullable": True},
        },
        "additionalProperties": False,
    },
    "IngestRequest": {
        "type": "object",
        "required": ["events"],
        "properties": {"events": {"type": "array", "items": _ref("Event")}},
        "additionalProperties": False,
    },
    "IngestResult": {
        "type": "object",
        "required": ["written"],
        "properties": {"written": {"type": "integer"}},
    },
    "BlastRequest": {
        "type": "object",
        "required": ["document"],
        "properties": {
            "document": {"description": "The new flag document (as for PUT /flags/{name})."},
            "days": {"type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": 366, "default": 7},
        },
        "additionalProperties": False,
    },
    "BlastRadius": {
        "type": "object",
        "description": "Units (distinct keys) seen in the last `days`, each decided as a user id alone, "
        "under the current flag and the new document; `transitions` lists the changes, largest first.",
        "required": ["flag", "days", "units", "changed", "capped", "transitions"],
        "properties": {
            "flag": {"type": "string"},
            "days": {"type": "number"},
            "since": {"type": "number", "description": "Epoch seconds."},
            "units": {"type": "integer"},
            "changed": {"type": "integer"},
            "capped": {"type": "boolean", "description": "More units were seen than `limit`."},
            "limit": {"type": "integer"},
            "on_to_off": {"type": "integer"},
            "off_to_on": {"type": "integer"},
            "variant_changes": {"type": "integer"},
            "transitions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "from": {"type": "string", "description": "off, on, or a variant"},
                        "to": {"type": "string"},
                        "units": {"type": "integer"},
                    },
                },
            },
            "approximation": {"type": "string"},
            "summary": {"type": "string", "description": "One line: N of M units seen ... would change: ..."},
        },
    },
    "GuardRequest": {
        "type": "object",
        "properties": {
            "enforce": {
                "type": "boolean",
                "default": False,
                "description": "Halt the flag when a guardrail is breached (written with your name).",
            }
        },
        "additionalProperties": False,
    },
    "GuardState": {
        "type": "object",
        "description": "The newest guard check this server made (checked_at null: none yet), and whether "
        "the flag is halted now (off, its newest history entry the guard's).",
        "required": ["flag", "interval", "checked_at", "breached", "guardrails", "halted", "halt"],
        "properties": {
            "flag": {"type": "string"},
            "interval": {"type": "number", "description": "Seconds between the loop's rounds (0: off)."},
            "checked_at": _NUM_OR_NULL,
            "enforced": {"type": "boolean", "nullable": True},
            "error": _STR_OR_NULL,
            "breached": {"type": "boolean"},
            "switched": {"type": "integer", "description": "Units seen in both arms, left out."},
            "halted_by_check": {"type": "boolean", "description": "This check turned the flag off."},
            "guardrails": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "metric": {"type": "string"},
                        "max_increase": {"type": "number"},
                        "min_units": {"type": "integer"},
                        "control_units": {"type": "integer"},
                        "treatment_units": {"type": "integer"},
                        "control_rate": {"type": "number"},
                        "treatment_rate": {"type": "number"},
                        "difference": {"type": "number"},
                        "interval": {"type": "array", "items": _NUM_OR_NULL},
                        "breached": {"type": "boolean"},
                        "problem": _STR_OR_NULL,
                        "evidence": {"type": "string"},
                    },
                },
            },
            "halted": {"type": "boolean"},
            "halt": {
                "type": "object",
                "nullable": True,
                "properties": {
                    "at": {"type": "number"},
                    "version": _INT_OR_NULL,
                    "author": {"type": "string", "description": "guard: and the evidence"},
                },
            },
        },
    },
    "EvaluateRequest": {
        "type": "object",
        "description": "Give flag (one), flags (several) or neither (all flags).",
        "properties": {
            "context": _ref("Context"),
            "flag": {"type": "string"},
            "flags": {"type": "array", "items": {"type": "string"}},
        },
        "additionalProperties": False,
    },
    "Decision": {
        "type": "object",
        "properties": {
            "flag": {"type": "string"},
            "enabled": {"type": "boolean"},
            "reason": {"type": "string", "enum": [r.value for r in Reason]},
            "variant": {"type": "string"},
            "rule": {"type": "string"},
            "experiment_id": {"type": "integer"},
            "error": {"type": "string"},
            "value": {
                "description": "What the flag serves: the variant's JSON value (values), else the "
                "variant, else enabled; null for an unknown flag."
            },
        },
        "required": ["flag", "enabled", "reason", "value"],
    },
    "EvaluateResult": {
        "type": "object",
        "properties": {
            "revision": {"type": "integer"},
            "decisions": {"type": "object", "additionalProperties": _ref("Decision")},
        },
        "required": ["revision", "decisions"],
    },
    "Token": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "scope": {"type": "string", "enum": ["read", "write", "approve", "admin"]},
            "created_at": {"type": "number"},
            "revoked_at": _NUM_OR_NULL,
            "last_used": _NUM_OR_NULL,
            "expires_at": _NUM_OR_NULL,
            "active": {"type": "boolean"},
            "environments": {"type": "array", "items": {"type": "string"}, "nullable": True},
            "token": {"type": "string", "description": "(create only) the secret, shown once."},
        },
        "required": ["id", "name", "scope", "created_at", "active"],
    },
    "User": {
        "type": "object",
        "description": "A user of the local user store (never its password hash).",
        "properties": {
            "name": {"type": "string"},
            "roles": {
                "type": "object",
                "description": "Environment (or '*': every one not named) -> role.",
                "additionalProperties": {"type": "string", "enum": ["viewer", "editor", "approver", "admin"]},
            },
            "created_at": {"type": "number"},
            "disabled": {"type": "boolean"},
        },
        "required": ["name", "roles", "created_at", "disabled"],
        "additionalProperties": False,
    },
    "NewToken": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1, "pattern": "\\S"},
            "scope": {"type": "string", "enum": ["read", "write", "approve", "admin"]},
            "environments": {
                "type": "array",
                "items": {"type": "string"},
                "minItems": 1,
                "description": "Limit the token to these environments (default: every one).",
            },
        },
        "required": ["name", "scope"],
        "additionalProperties": False,
    },
    "Health": {
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": ["ok", "degraded"]},
            "state": {"type": "string", "enum": ["live", "stale", "cached", "defaults"]},
            "revision": {"type": "integer"},
            "flags": {"type": "integer"},
            "invalid": {"type": "integer"},
            "age": _NUM_OR_NULL,
            "store": {"type": "string"},
            "last_error": _STR_OR_NULL,
        },
        "required": ["status", "state", "revision", "flags"],
    },
}


def _paths() -> dict[str, Any]:
    flag = _ref("Flag")
    public: list[dict[str, Any]] = []
    return {
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "Health: 200 while the flags are live, 503 otherwise.",
                "security": public,
                "responses": {
                    "200": _json(_ref("Health"), "Live."),
                    "503": _json(_ref("Health"), "Stale, cached or no data."),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics (text exposition format).",
                "security": public,
                "responses": {
                    "200": {
                        "description": "Metrics.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/api/v1/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document.",
                "security": public,
                "responses": {"200": _json({"type": "object"}, "The OpenAPI document.")},
            }
        },
        "/api/v1/flags": {
            "get": {
                "operationId": "listFlags",
                "summary": "Every flag, filtered (filters AND together).",
                "parameters": [
                    {"name": "tag", "in": "query", "schema": {"type": "string"}},
                    {"name": "owner", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "kind",
                        "in": "query",
                        "schema": {"type": "string", "enum": list(_KINDS)},
                    },
                    {
                        "name": "state",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["on", "off", "partial", "invalid"]},
                    },
                    {"name": "stale", "in": "query", "schema": {"type": "boolean"}},
                    {
                        "name": "archived",
                        "in": "query",
                        "description": "Archived flags: listed with the rest (include, the default), "
                        "left out (exclude), or alone (only).",
                        "schema": {"type": "string", "enum": ["include", "exclude", "only"]},
                    },
                    {
                        "name": "q",
                        "in": "query",
                        "description": "In the name or description.",
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {"200": _json(_ref("FlagList"), "The flags."), **_errors(400, *_AUTH, 503)},
            },
            "post": {
                "operationId": "createFlag",
                "summary": "Create a flag (409 if it exists).",
                "requestBody": _body(_ref("NewFlag")),
                "responses": {
                    "201": _json(flag, "Created.", _ETAG),
                    **_errors(400, *_AUTH, 409, 413, 422, 503, 504),
                },
            },
        },
        "/api/v1/flags/{name}": {
            "parameters": [_NAME],
            "get": {
                "operationId": "getFlag",
                "responses": {"200": _json(flag, "The flag.", _ETAG), **_errors(*_AUTH, 404, 503)},
            },
            "put": {
                "operationId": "replaceFlag",
                "summary": "Write the flag's document (creating it if absent).",
                "parameters": [_IF_MATCH],
                "requestBody": _body(_ref("FlagDocument")),
                "responses": {
                    "200": _json(flag, "Replaced.", _ETAG),
                    "201": _json(flag, "Created.", _ETAG),
                    **_errors(400, *_AUTH, 409, 413, 422, 503, 504),
                },
            },
            "patch": {
                "operationId": "patchFlag",
                "summary": "A common operation: kill, enable, set_percentage, add/remove users or groups...",
                "parameters": [_IF_MATCH],
                "requestBody": _body(_ref("Patch")),
                "responses": {
                    "200": _json(flag, "Applied (changed says whether anything changed).", _ETAG),
                    **_errors(400, *_AUTH, 404, 409, 413, 422, 503, 504),
                },
            },
            "delete": {
                "operationId": "deleteFlag",
                "parameters": [
                    _IF_MATCH,
                    {"name": "comment", "in": "query", "schema": _COMMENT, "description": "Why (history)."},
                ],
                "responses": {
                    "204": {"description": "Deleted."},
                    **_errors(400, *_AUTH, 404, 409, 422, 503, 504),
                },
            },
        },
        "/api/v1/flags/{name}/history": {
            "parameters": [_NAME],
            "get": {
                "operationId": "flagHistory",
                "summary": "The flag's changes, newest first: the audit trail.",
                "parameters": [_LIMIT],
                "responses": {"200": _json(_ref("History"), "Entries."), **_errors(400, *_AUTH, 404, 503)},
            },
        },
        "/api/v1/flags/{name}/diff": {
            "parameters": [_NAME],
            "get": {
                "operationId": "diffFlag",
                "summary": "What changed between two versions (to: default the current one).",
                "parameters": [
                    {
                        "name": "from",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "integer", "minimum": 1},
                    },
                    {"name": "to", "in": "query", "schema": {"type": "integer", "minimum": 1}},
                ],
                "responses": {
                    "200": _json(_ref("Diff"), "The difference."),
                    **_errors(400, *_AUTH, 404, 503),
                },
            },
        },
        "/api/v1/flags/{name}/report": {
            "parameters": [_NAME],
            "get": {
                "operationId": "flagReport",
                "summary": "The experiment's results from the event store: per metric and variant the units, "
                "value, lift with interval, chance to win; the sample-ratio check. format=svg: a plot.",
                "parameters": [
                    {
                        "name": "metric",
                        "in": "query",
                        "description": "Event names, comma-separated, each may end in :conversion or :mean, "
                        "or NUM/DEN for a ratio (default: every event name).",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "control",
                        "in": "query",
                        "description": "The control variant (default control_1, else the first).",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "experiment_id",
                        "in": "query",
                        "description": "Only exposures recorded with this experiment id.",
                        "schema": {"type": "integer"},
                    },
                    {
                        "name": "since",
                        "in": "query",
                        "description": "Only units first exposed at or after this time "
                        "(epoch seconds or ISO 8601).",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "until",
                        "in": "query",
                        "description": "Only exposures and metric events before this time.",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "cuped_days",
                        "in": "query",
                        "description": "CUPED with each unit's metric in this many days "
                        "before its first exposure.",
                        "schema": {"type": "number"},
                    },
                    {"name": "format", "in": "query", "schema": {"type": "string", "enum": ["json", "svg"]}},
                    {
                        "name": "plot",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["intervals", "counts"]},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "The report (JSON), or with format=svg the picture.",
                        "content": {
                            "application/json": {"schema": {"type": "object"}},
                            "image/svg+xml": {"schema": {"type": "string"}},
                        },
                    },
                    **_errors(400, *_AUTH, 404, 501, 503),
                },
            },
        },
        "/api/v1/flags/{name}/rollback": {
            "parameters": [_NAME],
            "post": {
                "operationId": "rollbackFlag",
                "summary": "Write the document the flag had at an earlier version.",
                "parameters": [_IF_MATCH],
                "requestBody": _body(_ref("Rollback")),
                "responses": {
                    "200": _json(flag, "Rolled back.", _ETAG),
                    **_errors(400, *_AUTH, 404, 409, 413, 422, 503, 504),
                },
            },
        },
        "/api/v1/flags/{name}/blast": {
            "parameters": [_NAME],
            "post": {
                "operationId": "blastRadius",
                "summary": "How many units seen in the last days a new document would move (write scope; "
                "writes nothing).",
                "requestBody": _body(_ref("BlastRequest")),
                "responses": {
                    "200": _json(_ref("BlastRadius"), "The count."),
                    **_errors(400, *_AUTH, 404, 413, 422, 501, 503),
                },
            },
        },
        "/api/v1/flags/{name}/guard": {
            "parameters": [_NAME],
            "get": {
                "operationId": "flagGuard",
                "summary": "The guard's newest check of the flag's guardrails; whether it halted the flag.",
                "responses": {
                    "200": _json(_ref("GuardState"), "The guard's state."),
                    **_errors(400, *_AUTH, 404, 501, 503),
                },
            },
            "post": {
                "operationId": "checkFlagGuard",
                "summary": "Check the flag's guardrails now (write scope); enforce: halt it on a breach.",
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": _ref("GuardRequest")}},
                },
                "responses": {
                    "200": _json(_ref("GuardState"), "The check."),
                    **_errors(400, *_AUTH, 404, 413, 501, 503),
                },
            },
        },
        "/api/v1/segments": {
            "get": {
                "operationId": "listSegments",
                "summary": "Every segment, with the flags that use each.",
                "responses": {
                    "200": _json(_ref("SegmentList"), "The segments."),
                    **_errors(400, *_AUTH, 503),
                },
            },
        },
        "/api/v1/segments/{name}": {
            "parameters": [_SEGMENT_NAME],
            "get": {
                "operationId": "getSegment",
                "responses": {
                    "200": _json(_ref("Segment"), "The segment.", _ETAG),
                    **_errors(400, *_AUTH, 404, 503),
                },
            },
            "put": {
                "operationId": "replaceSegment",
                "summary": "Write the segment's document (creating it if absent).",
                "parameters": [
                    _IF_MATCH,
                    {
                        "name": "If-None-Match",
                        "in": "header",
                        "required": False,
                        "description": "'*': create only (409 if the segment exists).",
                        "schema": {"type": "string", "enum": ["*"]},
                    },
                ],
                "requestBody": _body(_ref("FlagDocument")),
                "responses": {
                    "200": _json(_ref("Segment"), "Replaced.", _ETAG),
                    "201": _json(_ref("Segment"), "Created.", _ETAG),
                    **_errors(400, *_AUTH, 409, 413, 422, 503, 504),
                },
            },
            "delete": {
                "operationId": "deleteSegment",
                "summary": "Delete the segment; refused (409, used_by) while flags use it.",
                "parameters": [
                    _IF_MATCH,
                    {"name": "comment", "in": "query", "schema": _COMMENT, "description": "Why (history)."},
                ],
                "responses": {
                    "204": {"description": "Deleted."},
                    **_errors(400, *_AUTH, 404, 409, 422, 503, 504),
                },
            },
        },
        "/api/v1/segments/{name}/history": {
            "parameters": [_SEGMENT_NAME],
            "get": {
                "operationId": "segmentHistory",
                "summary": "The segment's changes, newest first.",
                "parameters": [_LIMIT],
                "responses": {"200": _json(_ref("History"), "Entries."), **_errors(400, *_AUTH, 503)},
            },
        },
        "/api/v1/history": {
            "get": {
                "operationId": "history",
                "summary": "Changes across flags, newest first.",
                "parameters": [_LIMIT],
                "responses": {"200": _json(_ref("History"), "Entries."), **_errors(400, *_AUTH, 503)},
            }
        },
        "/api/v1/validate": {
            "post": {
                "operationId": "validate",
                "summary": "Check a document without writing it.",
                "requestBody": _body(_ref("ValidateRequest")),
                "responses": {
                    "200": _json(_ref("ValidateResult"), "The verdict."),
                    **_errors(400, *_AUTH, 413),
                },
            }
        },
        "/api/v1/evaluate": {
            "post": {
                "operationId": "evaluate",
                "summary": "Decisions (with reasons and values) for a context: one flag, several, or all.",
                "requestBody": _body(_ref("EvaluateRequest")),
                "responses": {
                    "200": _json(_ref("EvaluateResult"), "Decisions."),
                    **_errors(400, *_AUTH, 413),
                },
            }
        },
        "/api/v1/ingest": {
            "post": {
                "operationId": "ingest",
                "summary": "Record exposures, metric events and flag usage (write scope) in the server's "
                "event store; "
                "all or none are written. The body may be gzip (Content-Encoding).",
                "requestBody": _body(_ref("IngestRequest")),
                "responses": {
                    "200": _json(_ref("IngestResult"), "How many events were written."),
                    **_errors(400, *_AUTH, 413, 415, 501, 503),
                },
            }
        },
        "/api/v1/events": {
            "get": {
                "operationId": "events",
                "summary": "Server-sent events: event 'change', data {name, version, document, revision}.",
                "responses": {
                    "200": {
                        "description": "An endless stream; a ': ping' comment every 15 s.",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    **_errors(*_AUTH),
                },
            }
        },
        "/api/v1/tokens": {
            "get": {
                "operationId": "listTokens",
                "summary": "Tokens (never their secrets). Admin scope.",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"tokens": {"type": "array", "items": _ref("Token")}},
                        },
                        "Tokens.",
                    ),
                    **_errors(*_AUTH),
                },
            },
            "post": {
                "operationId": "createToken",
                "summary": "A new token; its secret is in the answer, once. Admin scope.",
                "requestBody": _body(_ref("NewToken")),
                "responses": {"201": _json(_ref("Token"), "Created."), **_errors(400, *_AUTH, 413, 503)},
            },
        },
        "/api/v1/force-tokens": {
            "post": {
                "operationId": "createForceToken",
                "summary": "A signed token forcing one ?feature= value until it expires. Admin scope.",
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["value"],
                        "properties": {
                            "value": {"type": "string", "description": "The ?feature= value forced."},
                            "ttl": {
                                "oneOf": [{"type": "number"}, {"type": "string"}],
                                "description": "Seconds, or a duration ('15m', '1h', '7d'). Default 1h.",
                            },
                        },
                        "additionalProperties": False,
                    }
                ),
                "responses": {
                    "201": _json(
                        {
                            "type": "object",
                            "properties": {
                                "token": {"type": "string"},
                                "value": {"type": "string"},
                                "expires": {"type": "string"},
                                "expires_at": {"type": "integer"},
                            },
                        },
                        "The token (use it as ?feature=TOKEN).",
                    ),
                    **_errors(400, *_AUTH, 413, 501),
                },
            }
        },
        "/api/v1/tokens/{token_id}": {
            "parameters": [
                {"name": "token_id", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "delete": {
                "operationId": "revokeToken",
                "summary": "Revoke a token: it stops working at once. Admin scope.",
                "responses": {"200": _json(_ref("Token"), "Revoked."), **_errors(*_AUTH, 404, 503)},
            },
        },
        **_user_paths(),
        **_environment_paths(),
    }


def _user_paths() -> dict[str, Any]:
    """The local user store (flagstaff.http.api.users): admin only, audited."""
    # Any string: roles and scope words are both read, in any case (400 for others).
    roles = {"type": "object", "additionalProperties": {"type": "string"}}
    user_name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    users = {"type": "object", "properties": {"users": {"type": "array", "items": _ref("User")}}}
    return {
        "/api/v1/users": {
            "get": {
                "operationId": "listUsers",
                "summary": "Users with their roles per environment and whether disabled. Admin.",
                "responses": {"200": _json(users, "Users."), **_errors(400, *_AUTH, 501, 503)},
            },
            "post": {
                "operationId": "createUser",
                "summary": "A new user (the password is stored hashed, scrypt). Admin in each "
                "environment it gets a role in ('*': every one).",
                "requestBody": _body(
                    {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$"},
                            "password": {"type": "string", "minLength": 10},
                            "roles": roles,
                        },
                        "required": ["name", "password"],
                        "additionalProperties": False,
                    }
                ),
                "responses": {
                    "201": _json(_ref("User"), "Created."),
                    **_errors(400, *_AUTH, 409, 413, 501, 503),
                },
            },
        },
        "/api/v1/users/{name}": {
            "parameters": [user_name],
            "get": {
                "operationId": "getUser",
                "summary": "One user. Admin.",
                "responses": {"200": _json(_ref("User"), "The user."), **_errors(400, *_AUTH, 404, 501, 503)},
            },
            "patch": {
                "operationId": "patchUser",
                "summary": "Disable or enable a user (disabling ends its sessions), and give or take "
                "roles (null takes one away). Admin where it changes access.",
                "requestBody": _body(
                    {
                        "type": "object",
                        "properties": {
                            "disabled": {"type": "boolean"},
                            "roles": {
                                "type": "object",
                                "additionalProperties": {"type": "string", "nullable": True},
                            },
                        },
                        "minProperties": 1,
                        "additionalProperties": False,
                    }
                ),
                "responses": {
                    "200": _json(_ref("User"), "The user as changed."),
                    **_errors(400, *_AUTH, 404, 409, 413, 501, 503),
                },
            },
            "delete": {
                "operationId": "deleteUser",
                "summary": "Remove a user; its sessions end. Admin wherever it has a role.",
                "responses": {"204": {"description": "Removed."}, **_errors(400, *_AUTH, 404, 409, 501, 503)},
            },
        },
    }


def _environment_paths() -> dict[str, Any]:
    """Environments and promotion (flagstaff.http.environments, flagstaff.http.api.envs). Every
    path is also served under /api/v1/envs/{env}/... for each environment."""
    obj = {"type": "object"}
    query = [
        {"name": "to", "in": "query", "required": True, "schema": {"type": "string"}},
        {"name": "expect", "in": "query", "schema": {"type": "integer", "minimum": 0},
         "description": "The destination version shown in the plan (0: no such flag there)."},
        {"name": "source", "in": "query", "schema": {"type": "integer", "minimum": 1}},
        {"name": "dry_run", "in": "query", "schema": {"type": "boolean"}},
    ]  # fmt: skip
    return {
        "/api/v1/envs": {
            "get": {
                "operationId": "listEnvironments",
                "summary": "The environments, the default first, with the caller's scope and role in each.",
                "responses": {"200": _json(obj, "The environments."), **_errors(*_AUTH)},
            },
        },
        "/api/v1/flags/{name}/promote": {
            "parameters": [_NAME, *query],
            "post": {
                "operationId": "promoteFlag",
                "summary": "Copy the flag's document to environment `to` (read here, write there). Without "
                "expect (428) or with dry_run: the plan (diff, versions, blast radius), nothing written.",
                "responses": {
                    "200": _json(obj, "Promoted (or, dry run, the plan)."),
                    "428": _json(obj, "The plan: retry with expect=target_version."),
                    **_errors(400, *_AUTH, 404, 409, 422, 503, 504),
                },
            },
        },
    }


@functools.cache
def _document() -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "flagstaff",
            "version": "1",
            "description": "Feature flags: read, change (validated, compare-and-set, audited), evaluate.",
        },
        "security": [{"bearer": []}],
        "paths": {**_paths(), **_change_request_paths(), **_client_paths()},
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "fst_… tokens"}
            },
            "schemas": {**_SCHEMAS, **_CHANGE_SCHEMAS},
        },
    }


def document() -> dict[str, Any]:
    """The OpenAPI document (a fresh copy)."""
    return copy.deepcopy(_document())


# --------------------------------------------------------------------------- change requests

_CHANGE_ID = {
    "name": "change_id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1},
}
_CHANGE_SCHEMAS: dict[str, Any] = {
    "ChangeRequest": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "flag": {"type": "string"},
            "document": _ANY,
            "base_version": {"type": "integer", "description": "The flag's version when proposed (0: new)."},
            "comment": {"type": "string"},
            "proposer": {"type": "string"},
            "proposer_name": {"type": "string"},
            "created_at": {"type": "number"},
            "apply_at": _NUM_OR_NULL,
            "status": {
                "type": "string",
                "enum": ["pending", "approved", "applying", "applied", "rejected", "cancelled", "failed"],
            },
            "approver_name": _STR_OR_NULL,
            "note": {"type": "string"},
            "applied_version": _INT_OR_NULL,
            "current_version": {"type": "integer"},
            "stale": {"type": "boolean", "description": "Open, and the flag moved since the proposal."},
            "changes": {"type": "array", "items": {"type": "object"}},
        },
        "required": ["id", "flag", "base_version", "status", "proposer_name"],
    },
    "NewChangeRequest": {
        "type": "object",
        "properties": {
            "flag": {"type": "string", "minLength": 1},
            "document": _ANY,
            "comment": {"type": "string", "maxLength": 4000},
            "apply_at": {
                "description": "When the server applies it once approved: ISO 8601 with an offset, "
                "or epoch seconds.",
                "oneOf": [{"type": "string"}, {"type": "number", "minimum": 0}],
                "nullable": True,
            },
        },
        "required": ["flag", "document"],
        "additionalProperties": False,
    },
}


def _change_request_paths() -> dict[str, Any]:
    one = _ref("ChangeRequest")
    empty = {"required": False, "content": {"application/json": {"schema": {"type": "object"}}}}

    def action(op: str, summary: str, *codes: int, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "parameters": [_CHANGE_ID],
            "post": {
                "operationId": op,
                "summary": summary,
                "requestBody": body or empty,
                "responses": {"200": _json(one, "The change request now."), **_errors(400, *_AUTH, *codes)},
            },
        }

    reason = {
        "required": False,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"reason": {"type": "string", "maxLength": 4000}},
                    "additionalProperties": False,
                }
            }
        },
    }
    return {
        "/api/v1/change-requests": {
            "get": {
                "operationId": "listChangeRequests",
                "summary": "Change requests, newest first (?status=, ?flag=).",
                "parameters": [
                    {
                        "name": "status",
                        "in": "query",
                        "required": False,
                        "schema": _CHANGE_SCHEMAS["ChangeRequest"]["properties"]["status"],
                    },
                    {"name": "flag", "in": "query", "required": False, "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"change_requests": {"type": "array", "items": one}},
                        },
                        "The change requests.",
                    ),
                    **_errors(400, *_AUTH, 503),
                },
            },
            "post": {
                "operationId": "proposeChange",
                "summary": "Propose a flag's new document (write scope); recorded with the flag's version.",
                "parameters": [_IF_MATCH],
                "requestBody": _body(_ref("NewChangeRequest")),
                "responses": {"201": _json(one, "Proposed."), **_errors(400, *_AUTH, 409, 413, 422, 503)},
            },
        },
        "/api/v1/change-requests/{change_id}": {
            "parameters": [_CHANGE_ID],
            "get": {
                "operationId": "getChangeRequest",
                "summary": "One change request, with what it changes.",
                "responses": {"200": _json(one, "The change request."), **_errors(400, *_AUTH, 404, 503)},
            },
        },
        "/api/v1/change-requests/{change_id}/approve": action(
            "approveChange", "Approve (approve scope; not the proposer).", 404, 409, 413, 503
        ),
        "/api/v1/change-requests/{change_id}/reject": action(
            "rejectChange",
            "Reject (approve scope), with an optional reason.",
            404,
            409,
            413,
            503,
            body=reason,
        ),
        "/api/v1/change-requests/{change_id}/cancel": action(
            "cancelChange", "Withdraw (the proposer, or approve scope).", 404, 409, 413, 503
        ),
        "/api/v1/change-requests/{change_id}/apply": action(
            "applyChange",
            "Write an approved change with compare-and-set on its base version; 409 (code stale) "
            "with what changed if the flag moved.",
            404,
            409,
            413,
            422,
            503,
            504,
        ),
    }


# --------------------------------------------------------------------------- client-side evaluation

_CLIENT_KEY = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "created_at": {"type": "number"},
        "revoked_at": _NUM_OR_NULL,
        "active": {"type": "boolean"},
        "environment": {
            **_STR_OR_NULL,
            "description": "The environment it evaluates in (null: the default one; made before "
            "keys had one, or by the CLI without --env).",
        },
        "key": {"type": "string", "description": "(create only) the fsc_… key, shown once."},
    },
    "required": ["id", "name", "created_at", "active"],
}
_CLIENT_ANSWER = {
    "type": "object",
    "properties": {
        "flags": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "properties": {"enabled": {"type": "boolean"}, "variant": _STR_OR_NULL, "value": _ANY},
                "required": ["enabled", "variant", "value"],
            },
        }
    },
    "required": ["flags"],
}


def _client_paths() -> dict[str, Any]:
    public: list[dict[str, Any]] = []  # a public client key (fsc_…), not an API token
    etag = {
        "ETag": {
            "description": "A hash of the answer: send it as If-None-Match.",
            "schema": {"type": "string"},
        }
    }
    answers = {
        "200": _json(_CLIENT_ANSWER, "The client-visible flags' decisions.", etag),
        "304": {"description": "Not modified (If-None-Match matched)."},
        **_errors(400, 401, 403, 413, 429, 503),
    }
    summary = (
        "Decisions (enabled, variant, value) of the flags with client_visible: true, for a context; "
        "Authorization: Bearer fsc_… (a public client key, of this environment: 403 for another's). "
        "Limited per key and per address."
    )
    return {
        "/api/v1/client/evaluate": {
            "get": {
                "operationId": "clientEvaluateGet",
                "summary": summary,
                "security": public,
                "parameters": [
                    {
                        "name": "context",
                        "in": "query",
                        "required": False,
                        "description": "The context, as JSON.",
                        "schema": {"type": "string"},
                    },
                ],
                "responses": answers,
            },
            "post": {
                "operationId": "clientEvaluate",
                "summary": summary,
                "security": public,
                "requestBody": _body(
                    {
                        "type": "object",
                        "properties": {"context": {"type": "object", "nullable": True}},
                        "additionalProperties": False,
                    }
                ),
                "responses": answers,
            },
            "options": {
                "operationId": "clientEvaluatePreflight",
                "summary": "CORS preflight: allowed for the origins of serve --client-origins.",
                "security": public,
                "responses": {"204": {"description": "The CORS headers (none for an origin not allowed)."}},
            },
        },
        "/api/v1/client-keys": {
            "get": {
                "operationId": "listClientKeys",
                "summary": "Client keys (never the keys themselves). Admin scope.",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"client_keys": {"type": "array", "items": _CLIENT_KEY}},
                        },
                        "Client keys.",
                    ),
                    **_errors(400, *_AUTH, 503),
                },
            },
            "post": {
                "operationId": "createClientKey",
                "summary": "A new public client key; it is in the answer, once. Admin scope.",
                "requestBody": _body(
                    {
                        "type": "object",
                        "properties": {"name": {"type": "string", "minLength": 1, "pattern": "\\S"}},
                        "required": ["name"],
                        "additionalProperties": False,
                    }
                ),
                "responses": {"201": _json(_CLIENT_KEY, "Created."), **_errors(400, *_AUTH, 413, 503)},
            },
        },
        "/api/v1/client-keys/{key_id}": {
            "parameters": [{"name": "key_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "delete": {
                "operationId": "revokeClientKey",
                "summary": "Revoke a client key: it stops working at once. Admin scope.",
                "responses": {"200": _json(_CLIENT_KEY, "Revoked."), **_errors(400, *_AUTH, 404, 503)},
            },
        },
    }
