"""The result of evaluating a flag: enabled or not, which variant, and why."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Decision", "Reason"]


class Reason(StrEnum):
    """Why a decision came out the way it did. ``Decision.rule`` names the key."""

    OFF = "off"
    """The master switch (``"enabled": "off"`` or ``false``) is off."""
    ARCHIVED = "archived"
    """The flag is archived (``"archived": true``): off for everyone, before any other key."""
    SCHEDULE = "schedule"
    """Outside the flag's schedule (before ``start`` or from ``end`` on)."""
    FORCED = "forced"
    """A ``?feature=`` value forced a variant through a ``url`` mapping."""
    ON = "on"
    """``"enabled": "on"``: on for everyone."""
    DENIED = "denied"
    """The flag's ``deny`` list holds the context (``rule`` names which entry): off, whatever
    else the flag says (only the kill switch comes first)."""
    PREREQUISITE = "prerequisite"
    """A prerequisite flag did not serve what this flag requires (``rule`` names that flag)."""
    HOLDOUT = "holdout"
    """The context is in a holdout segment (``rule`` names it): it sees no experiment."""
    TARGET = "target"
    """A selector matched (``rule`` names it: ``admin``, ``users``, ``rules[2]``…)."""
    RULE = "rule"
    """An ordered targeting rule matched (``rule`` is ``targeting[i]``); its serve decided,
    on or off. The ``default`` serve gives ``DEFAULT`` with ``rule`` set to ``"default"``."""
    PERCENTAGE = "percentage"
    """Inside the flag's percentage (``rule`` names which percentage key)."""
    EXPERIMENT = "experiment"
    """Bucketed into an experiment's treatment variant."""
    CONTROL = "control"
    """Bucketed into an experiment's control group (not enabled, but exposed)."""
    EXCLUDED = "excluded"
    """Eligible for the experiment but in none of its variants."""
    DEFAULT = "default"
    """Nothing matched: off."""
    UNKNOWN_FLAG = "unknown_flag"
    """No flag of that name exists: off."""
    ERROR = "error"
    """The flag or context could not be evaluated: off (``error`` says why)."""
    OVERRIDE = "override"
    """A local override decided (:mod:`flagstaff.overrides`; ``rule`` names where it came from),
    not the store's flag. Never produced by the evaluator itself."""


@dataclass(frozen=True, slots=True)
class Decision:
    """One flag's answer for one context.

    Decisions are immutable and mostly pre-built when a flag is parsed, so
    evaluation returns shared objects rather than allocating new ones.
    ``experiment_id`` is set when the decision is an experiment exposure
    (treatment or control) that should be logged.
    """

    flag: str
    enabled: bool
    reason: Reason
    variant: str | None = None
    rule: str | None = None
    experiment_id: int | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view, omitting empty fields."""
        out: dict[str, object] = {
            "flag": self.flag,
            "enabled": self.enabled,
            "reason": self.reason.value,
        }
        if self.variant is not None:
            out["variant"] = self.variant
        if self.rule is not None:
            out["rule"] = self.rule
        if self.experiment_id is not None:
            out["experiment_id"] = self.experiment_id
        if self.error is not None:
            out["error"] = self.error
        return out
