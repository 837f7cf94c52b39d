"""The document edits: every change an operator can make to one flag, as a pure function.

Each edit takes the flag's decoded document (``None`` for a flag that does not
exist yet, where creating one is allowed) and returns the new document. Edits
never mutate their input, read no store and validate nothing: the caller,
:class:`flagstaff.admin.Admin`, reads the flag, applies an edit, validates the
result with :func:`~flagstaff.model.parse_flag` and writes it with
compare-and-set. Returning a document equal to the input means "no change"
(nothing is written). A document an edit does not know how to change (not a
flag document at all) is returned as it is, so validation refuses it with its
usual message.

The CLI, the HTTP API and the dashboard all reach these functions through
``Admin``, so the same edit gives the same document, the same validation
message and the same history author from every surface.

The kill switch
    :func:`kill` turns a flag off for everyone and keeps everything else, so
    :func:`enable` can bring it back exactly: an object gets ``"enabled": false``;
    a bare percentage ``25`` becomes ``{"enabled": false, "percentage": 25}``;
    ``"on"``/``true`` become ``{"enabled": false, "everyone": true}`` (killed,
    not merely off, so pages and ``list`` show it as killed); ``"off"``/``false``
    stay ``"off"``.

    :func:`enable` removes the kill key (a bare percentage comes back as the
    number it was); with ``everyone`` it turns the flag on for everyone
    (``"on"``, or ``"enabled": "on"`` in an object, which keeps the targeting for
    when the flag is narrowed again). Restoring the exact document from before a
    kill, and refusing an enable that would leave the flag off for everyone, need
    the flag's history: :meth:`flagstaff.admin.Admin.enable` does both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = [
    "Edit",
    "add_members",
    "as_object",
    "enable",
    "kill",
    "remove_members",
    "set_percentage",
    "set_variants",
]

Edit = Callable[[Any], Any]
"""``edit(document) -> document``: what :meth:`flagstaff.admin.Admin.update` applies."""


def kill(doc: Any) -> Any:
    """The kill switch: off for everyone, the rest of the document kept (see the module doc)."""
    if isinstance(doc, dict):
        return {**doc, "enabled": False}
    if isinstance(doc, int | float) and not isinstance(doc, bool):
        # Keep the percentage so that enable restores it.
        return {"enabled": False, "percentage": doc}
    if _is_on(doc):
        # Killed, not merely off: "everyone" says what enable brings back.
        return {"enabled": False, "everyone": True}
    return "off"


def enable(doc: Any, *, everyone: bool = False) -> Any:
    """Remove the kill switch; ``everyone`` turns the flag on for all (see the module doc)."""
    if isinstance(doc, dict):
        obj = {k: v for k, v in doc.items() if k != "enabled" or v not in (False, "off")}
        if everyone:
            obj["enabled"] = "on"
        elif set(obj) == {"percentage"}:
            return obj["percentage"]  # back to the bare number it was before the kill
        return obj
    if everyone or _is_on(doc):
        return "on"
    if _is_off(doc):
        return "off"
    return doc  # a bare percentage stays what it is


def set_percentage(doc: Any, percent: float) -> Any:
    """The percentage of users the flag is on for: a bare number unless the document
    is an object (then its ``percentage`` key, the rest kept)."""
    if doc is None or doc in ("on", "off") or isinstance(doc, bool | int | float):
        return _number(percent)
    if isinstance(doc, dict):
        return {**doc, "percentage": _number(percent)}
    return doc


def add_members(doc: Any, key: str, items: Iterable[str]) -> Any:
    """Add ``items`` to the list under ``key`` (``"users"``, ``"groups"``), after those it holds."""
    obj = as_object(doc)
    current = list(obj.get(key, []))
    current += [i for i in items if i not in current]
    return {**obj, key: current}


def remove_members(doc: Any, key: str, items: Iterable[str]) -> Any:
    """Remove ``items`` from the list under ``key``; the key goes when the list is empty.
    A document without such a list is returned as it is."""
    if not isinstance(doc, dict) or not isinstance(doc.get(key), list):
        return doc
    gone = list(items)  # a list: a member of an invalid document may not hash
    obj = dict(doc)
    obj[key] = [i for i in obj[key] if i not in gone]
    if not obj[key]:
        del obj[key]
    return obj


def set_variants(doc: Any, variants: Mapping[str, Any]) -> Any:
    """The experiment's variants (name -> percentage); a flag without an experiment
    gets one for everyone."""
    obj = as_object(doc)
    experiment = obj.get("experiment")
    experiment = dict(experiment) if isinstance(experiment, dict) else {"everyone": True}
    experiment["variants"] = dict(variants)
    return {**obj, "experiment": experiment}


def as_object(doc: Any) -> dict[str, Any]:
    """A document as an object, so that a selector can be added to it: ``"on"`` becomes
    ``{"enabled": "on"}``, a bare percentage ``{"percentage": n}``, ``"off"`` (or
    nothing yet) ``{}``."""
    if isinstance(doc, dict):
        return dict(doc)
    if _is_on(doc):
        return {"enabled": "on"}
    if isinstance(doc, int | float) and not isinstance(doc, bool):
        return {"percentage": doc}
    return {}  # None, "off", false: nothing targeted yet


# By identity or string: ``1 == True`` and ``0 == False`` in Python, and a bare 1 (1%)
# must not read as "on" (adding a user to a 1% flag turned it on for everyone).
def _is_on(doc: Any) -> bool:
    return doc is True or (isinstance(doc, str) and doc == "on")


def _is_off(doc: Any) -> bool:
    return doc is False or (isinstance(doc, str) and doc == "off")


def _number(percent: float) -> float | int:
    return int(percent) if float(percent).is_integer() else percent
