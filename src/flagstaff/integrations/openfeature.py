"""An OpenFeature provider: flagstaff behind the vendor-neutral ``openfeature-sdk`` API.

::

    from openfeature import api
    from flagstaff.integrations.openfeature import FlagstaffProvider

    api.set_provider(FlagstaffProvider("sqlite:///flagstaff.db"))
    client = api.get_client()
    client.get_boolean_value("new_checkout", False, EvaluationContext("42", {"groups": ["beta"]}))

Needs the ``openfeature`` extra (``pip install 'flagstaff[openfeature]'``).
``docs/openfeature.md`` has the whole mapping; in short:

Values
    **boolean**: on or off (always ``Decision.enabled``). **string**, **integer**,
    **float**, **object**: the flag's typed value (``client.value_details``, so the
    decision and the value come from one snapshot): the ``values`` entry of the variant
    served, else of ``"on"``/``"off"``. It must be of the
    asked type (an integer is a JSON integer, a float any JSON number, an object a JSON
    object or array), else the caller's default with ``TYPE_MISMATCH`` and a message
    saying what the flag serves. A flag with no ``values`` entry for the decision works
    as before values existed: **string** is the variant name, **integer** / **float**
    the variant name read as a number (variants ``["10", "25"]``), **object**
    ``{"enabled": bool, "variant": str}``; no variant for this context (off, or outside
    every variant) answers the caller's default with the reason why, and a flag that can
    never give a variant, or a variant that is not a number, is ``TYPE_MISMATCH``.

Reasons (flagstaff -> OpenFeature)
    ``on`` -> ``STATIC``; ``target``, ``rule``, ``forced``, ``denied``,
    ``prerequisite`` -> ``TARGETING_MATCH`` (a deny entry or a prerequisite decided for
    this context; the flag is not disabled); ``percentage``, ``experiment``,
    ``control``, ``excluded``, ``holdout`` -> ``SPLIT``; ``off``, ``schedule`` ->
    ``DISABLED``; ``default`` -> ``DEFAULT``; ``override`` -> ``"OVERRIDE"`` (a local
    override, :mod:`flagstaff.overrides`). The flagstaff reason, rule and experiment id
    are in ``flag_metadata``.

Errors (value: the caller's default, reason ``ERROR``)
    no such flag -> ``FLAG_NOT_FOUND``; no such flag because its document
    failed validation -> ``PARSE_ERROR``; a context flagstaff cannot use ->
    ``INVALID_CONTEXT``; the flag failed to evaluate -> ``GENERAL``;
    ``TYPE_MISMATCH`` as above.

Context
    ``targeting_key`` is the user id; attributes go through
    :meth:`flagstaff.Context.from_dict` (``groups``, ``cookie_id``, ``time``…
    become those fields, every other attribute a context attribute, which rules
    and ``bucket_by`` read: ``{"account": "acme"}``). An empty context
    evaluates with the request's :class:`~flagstaff.scope.Scope` if one is entered.

Events and status
    ``PROVIDER_CONFIGURATION_CHANGED`` after every applied store change, with the
    changed flag names in ``flags_changed``; ``PROVIDER_READY`` when the client
    is (again) live, ``PROVIDER_STALE`` when it serves old data (the store was
    lost, or only the on-disk cache is loaded), ``PROVIDER_ERROR`` while
    nothing is loaded. The client's state is read every ``poll_interval``
    seconds on one daemon thread, stopped by :meth:`FlagstaffProvider.shutdown`.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from flagstaff._extras import missing_extra

try:
    from openfeature.evaluation_context import EvaluationContext
    from openfeature.event import ProviderEventDetails
    from openfeature.exception import ErrorCode, ProviderNotReadyError
    from openfeature.flag_evaluation import FlagResolutionDetails, FlagValueType
    from openfeature.flag_evaluation import Reason as OFReason
    from openfeature.provider import AbstractProvider, Metadata
except ModuleNotFoundError as _exc:
    raise missing_extra(_exc, "openfeature", "openfeature", "flagstaff.integrations.openfeature") from None


from flagstaff.client import Client, SnapshotChange, State, connect
from flagstaff.context import Context
from flagstaff.decision import Decision, Reason
from flagstaff.document import is_segment_key
from flagstaff.model import Flag
from flagstaff.scope import current_scope

__all__ = ["OVERRIDE", "FlagstaffProvider", "to_context"]

OVERRIDE = "OVERRIDE"
"""The OpenFeature reason of a decision made by a local override."""

REASONS: Mapping[Reason, str] = {
    Reason.ON: OFReason.STATIC,
    Reason.TARGET: OFReason.TARGETING_MATCH,
    Reason.RULE: OFReason.TARGETING_MATCH,
    Reason.FORCED: OFReason.TARGETING_MATCH,
    # Decided for this context by a deny entry or a prerequisite: targeting, not a disabled
    # flag (DISABLED is the kill switch's). flag_metadata["flagstaff_reason"] tells them apart.
    Reason.DENIED: OFReason.TARGETING_MATCH,
    Reason.PREREQUISITE: OFReason.TARGETING_MATCH,
    Reason.PERCENTAGE: OFReason.SPLIT,
    Reason.EXPERIMENT: OFReason.SPLIT,
    Reason.CONTROL: OFReason.SPLIT,
    Reason.EXCLUDED: OFReason.SPLIT,
    Reason.HOLDOUT: OFReason.SPLIT,
    Reason.OFF: OFReason.DISABLED,
    Reason.ARCHIVED: OFReason.DISABLED,
    Reason.SCHEDULE: OFReason.DISABLED,
    Reason.DEFAULT: OFReason.DEFAULT,
    Reason.OVERRIDE: OVERRIDE,
    Reason.UNKNOWN_FLAG: OFReason.ERROR,
    Reason.ERROR: OFReason.ERROR,
}

_INTEGER = re.compile(r"^[+-]?\d+$")

T = TypeVar("T")


class _Same:
    """The default of ``_details(variant=...)``: the decision's own variant."""


_SAME = _Same()
Obj = Sequence[FlagValueType] | Mapping[str, FlagValueType]


def to_context(context: EvaluationContext | None) -> Context | None:
    """An OpenFeature evaluation context as a flagstaff context (``None`` when
    empty). Raises ``TypeError``/``ValueError`` for attributes flagstaff refuses."""
    if context is None or (not context.targeting_key and not context.attributes):
        return None
    data: dict[str, Any] = dict(context.attributes)
    if context.targeting_key:
        data["user_id"] = context.targeting_key  # the targeting key wins over a user_id attribute
    return Context.from_dict(data)


def _status_of(state: State) -> str:
    # The OpenFeature status a client state amounts to (compared to send one event per change).
    if state is State.LIVE:
        return "ready"
    if state is State.DEFAULTS:
        return "error"
    return "stale"  # STALE, CACHED: serving flags that may be out of date


class FlagstaffProvider(AbstractProvider):
    """Serves OpenFeature evaluations from a :class:`flagstaff.Client`.

    Pass a client (the provider never closes it) or a store URL (the provider
    opens the client in :meth:`initialize` and closes it in :meth:`shutdown`).
    Evaluation never raises and does no I/O: it is the client's.
    """

    def __init__(self, client: Client | str, *, poll_interval: float = 0.5) -> None:
        super().__init__()
        self._url = client if isinstance(client, str) else None
        self._client = None if isinstance(client, str) else client
        self._poll = poll_interval
        self._stop = threading.Event()
        self._monitor: threading.Thread | None = None
        self._unsubscribe: Any = None
        self._reported = "ready"

    @property
    def client(self) -> Client:
        """The flagstaff client (opened by :meth:`initialize` when given a URL)."""
        if self._client is None:
            raise ProviderNotReadyError("the provider is not initialized")
        return self._client

    # ------------------------------------------------------------------ lifecycle

    def get_metadata(self) -> Metadata:
        return Metadata(name="flagstaff")

    def initialize(self, evaluation_context: EvaluationContext) -> None:
        """Open the client if needed, subscribe to changes and start following
        its state. Raises ``ProviderNotReadyError`` (status ``ERROR``) when no
        flags could be loaded; ``PROVIDER_READY`` follows once they are."""
        if self._client is None:
            assert self._url is not None
            self._client = connect(self._url)
        client = self._client
        self._stop.clear()
        self._unsubscribe = client.on_change(self._changed)
        status = client.status()
        self._reported = _status_of(status.state) if status.state is State.DEFAULTS else "ready"
        self._monitor = threading.Thread(target=self._follow, name="flagstaff-openfeature", daemon=True)
        self._monitor.start()
        if status.state is State.DEFAULTS:
            raise ProviderNotReadyError(
                f"no flags loaded from {client.store_url}: {status.last_error or 'no answer yet'}"
            )

    def shutdown(self) -> None:
        """Stop following the client; close it if the provider opened it."""
        self._stop.set()
        if self._monitor is not None:
            self._monitor.join(5.0)
            self._monitor = None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._url is not None and self._client is not None:
            self._client.close()
            self._client = None

    def _changed(self, change: SnapshotChange) -> None:
        self.emit_provider_configuration_changed(
            ProviderEventDetails(
                # Flags only: a segment's key (segment:NAME) names no flag an application asks
                # for; the flags the segment change reaches are in ``names`` already.
                flags_changed=sorted(n for n in change.names if not is_segment_key(n)),
                message="flags reloaded" if change.reload else "flags changed",
                metadata={"revision": change.revision},
            )
        )

    def _follow(self) -> None:
        while not self._stop.wait(self._poll):
            client = self._client
            if client is None:
                return
            status = client.status()
            now = _status_of(status.state)
            if now == self._reported:
                continue
            self._reported = now
            details = ProviderEventDetails(
                message=f"{client.store_url} is {status.state.value}"
                + (f": {status.last_error}" if status.last_error else ""),
                metadata={"state": status.state.value, "revision": status.revision},
            )
            if now == "ready":
                self.emit_provider_ready(details)
            elif now == "stale":
                self.emit_provider_stale(details)
            else:
                details.error_code = ErrorCode.GENERAL
                self.emit_provider_error(details)

    # ------------------------------------------------------------------ evaluation

    def resolve_boolean_details(
        self, flag_key: str, default_value: bool, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[bool]:
        decision, failed = self._decide(flag_key, default_value, evaluation_context)
        if failed is not None:
            return failed
        return self._details(decision, decision.enabled)

    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        return self._typed(flag_key, default_value, evaluation_context, _as_string, str, "a string")

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        return self._typed(flag_key, default_value, evaluation_context, _as_integer, _integer, "an integer")

    def resolve_float_details(
        self, flag_key: str, default_value: float, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[float]:
        return self._typed(flag_key, default_value, evaluation_context, _as_float, _float, "a number")

    def resolve_object_details(
        self, flag_key: str, default_value: Obj, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[Obj]:
        decision, served, failed = self._resolve(flag_key, default_value, evaluation_context, value=True)
        if failed is not None:
            return failed
        entry = self._entry(flag_key, decision, evaluation_context)
        if entry is not None:
            return self._check(flag_key, decision, default_value, (entry, served), _as_object, "an object")
        value: dict[str, FlagValueType] = {"enabled": decision.enabled}
        if decision.variant is not None:
            value["variant"] = decision.variant
        return self._details(decision, value)

    # ------------------------------------------------------------------ helpers

    def _decide(
        self, key: str, default: T, evaluation_context: EvaluationContext | None
    ) -> tuple[Decision, FlagResolutionDetails[T] | None]:
        decision, _, failed = self._resolve(key, default, evaluation_context, value=False)
        return decision, failed

    def _resolve(
        self, key: str, default: T, evaluation_context: EvaluationContext | None, *, value: bool
    ) -> tuple[Decision, Any, FlagResolutionDetails[T] | None]:
        """The decision, with ``value``: the value the flag serves (``client.value_details``,
        one snapshot for both), and the error details when the caller gets its default."""
        client = self._client
        if client is None:
            not_ready = _error(default, ErrorCode.PROVIDER_NOT_READY, "the provider is not initialized")
            return _no_decision(key), None, not_ready
        try:
            context = to_context(evaluation_context)
        except (TypeError, ValueError) as exc:
            return _no_decision(key), None, _error(default, ErrorCode.INVALID_CONTEXT, f"bad context: {exc}")
        served: Any = None
        if value:
            details = client.value_details(key, context, default)
            decision, served = details.decision, details.value
        else:
            decision = client.evaluate(key, context)
        if decision.reason is Reason.UNKNOWN_FLAG:
            problem = client.status().invalid.get(key)
            if problem is not None:
                failed = _error(default, ErrorCode.PARSE_ERROR, f"flag {key!r} is invalid: {problem}")
                return decision, None, failed
            return decision, None, _error(default, ErrorCode.FLAG_NOT_FOUND, decision.error)
        if decision.reason is Reason.ERROR:
            return decision, None, _error(default, ErrorCode.GENERAL, decision.error)
        return decision, served, None

    def _typed(
        self,
        key: str,
        default: T,
        evaluation_context: EvaluationContext | None,
        check: Any,
        convert: Any,
        what: str,
    ) -> FlagResolutionDetails[T]:
        decision, value, failed = self._resolve(key, default, evaluation_context, value=True)
        if failed is not None:
            return failed
        entry = self._entry(key, decision, evaluation_context)
        if entry is not None:
            return self._check(key, decision, default, (entry, value), check, what)
        # No `values` entry for this decision: the variant name, as before values existed.
        if decision.variant is None:
            flag = self._flag(key)
            if flag is not None and not _has_variants(flag):
                return _error(
                    default,
                    ErrorCode.TYPE_MISMATCH,
                    f"flag {key!r} has no variants, so no {what} value: evaluate it as a boolean",
                )
            # Off for this context, or in no variant: the caller's default, and why.
            return self._details(decision, default, variant=None)
        converted = convert(decision.variant)
        if converted is None:
            message = f"variant {decision.variant!r} of flag {key!r} is not {what}"
            return _error(default, ErrorCode.TYPE_MISMATCH, message)
        result: T = converted
        return self._details(decision, result)

    def _flag(self, key: str, evaluation_context: EvaluationContext | None = None) -> Flag | None:
        client = self.client
        if to_context(evaluation_context) is None:
            scope = current_scope()
            if scope is not None and scope.owner is client:
                return scope.flags.get(key)  # the flag the request's pinned snapshot decided with
        return client.overrides.get(key) or client.snapshot.get(key)

    def _entry(
        self, key: str, decision: Decision, evaluation_context: EvaluationContext | None
    ) -> str | None:
        """The ``values`` key the flag serves ``decision`` from (its variant, else ``on`` or
        ``off``), or ``None`` when it has no entry for it (the value is then the variant's
        name or the on/off state, which the typed resolutions read as before values existed)."""
        flag = self._flag(key, evaluation_context)
        if flag is None or not flag.values:
            return None
        variant = decision.variant
        if variant is not None and variant in flag.values:
            return variant
        entry = "on" if decision.enabled else "off"
        return entry if entry in flag.values else None

    def _check(
        self, key: str, decision: Decision, default: T, served: tuple[str, Any], check: Any, what: str
    ) -> FlagResolutionDetails[T]:
        entry, raw = served
        ok, value = check(raw)
        if not ok:
            message = f"flag {key!r} serves {_kind(raw)} ({_short(raw)}) for {entry!r}, not {what}"
            return _error(default, ErrorCode.TYPE_MISMATCH, message)
        result: T = value
        return self._details(decision, result, variant=entry)

    def _details(
        self, decision: Decision, value: T, *, variant: str | _Same | None = _SAME
    ) -> FlagResolutionDetails[T]:
        """The details of ``value``; ``variant`` defaults to the decision's."""
        metadata: dict[str, bool | int | float | str] = {"flagstaff_reason": decision.reason.value}
        if decision.rule is not None:
            metadata["rule"] = decision.rule
        if decision.experiment_id is not None:
            metadata["experiment_id"] = decision.experiment_id
        return FlagResolutionDetails(
            value=value,
            reason=REASONS[decision.reason],
            variant=decision.variant if isinstance(variant, _Same) else variant,
            flag_metadata=metadata,
        )


def _has_variants(flag: Flag) -> bool:
    if flag.variants or flag.experiment is not None:
        return True
    document = flag.value  # a url mapping (feature value -> variant) forces variants
    return isinstance(document, dict) and isinstance(document.get("url"), dict)


def _as_string(value: Any) -> tuple[bool, Any]:
    return isinstance(value, str), value


def _as_integer(value: Any) -> tuple[bool, Any]:
    return isinstance(value, int) and not isinstance(value, bool), value


def _as_float(value: Any) -> tuple[bool, Any]:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return False, value
    return True, float(value)


def _as_object(value: Any) -> tuple[bool, Any]:
    # client.value_details gives a copy of an object or array: the caller may edit it.
    return isinstance(value, dict | list), value


def _kind(value: Any) -> str:
    """The JSON type of ``value``, with its article, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _integer(variant: str) -> int | None:
    return int(variant) if _INTEGER.match(variant) else None


def _float(variant: str) -> float | None:
    try:
        value = float(variant)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _no_decision(key: str) -> Decision:
    return Decision(key, False, Reason.ERROR)


def _error(default: T, code: ErrorCode, message: str | None) -> FlagResolutionDetails[T]:
    return FlagResolutionDetails(value=default, error_code=code, error_message=message, reason=OFReason.ERROR)
