"""Permission levels, in one place: what a token's scope or a user's role allows.

Four levels, each including the ones below::

    VIEWER (read) < EDITOR (write) < APPROVER (approve) < ADMIN (admin)

* viewer: read flags, segments, history; evaluate; follow the event stream;
* editor: create, change, roll back, delete and promote flags and segments; propose and
  apply change requests;
* approver: what an editor may, and approve or reject others' change requests (docs/changes.md);
* admin: what an approver may, and manage tokens and users.

One enum, :class:`Permission`, with two spellings of each level: tokens are
created and listed with the *scope* words (``read``, ``write``, ``approve``,
``admin``; :attr:`Permission.label`), users are given *roles* (``viewer``,
``editor``, ``approver``, ``admin``; :attr:`Permission.role`). ``Role`` is the
same class under the role vocabulary's name, and the members have aliases
(``Permission.EDITOR is Permission.WRITE``), so code may say either.
:meth:`Permission.parse` reads both.

Stored as text (the label), never as the number: the numbers may change when a
level is added, the words do not.
"""

from __future__ import annotations

from enum import IntEnum

from flagstaff.errors import FlagstaffError

__all__ = ["LEVELS", "Permission", "Role", "RoleError"]


class RoleError(FlagstaffError):
    """A permission level or role name that does not exist."""


class Permission(IntEnum):
    """What a token or a user may do; each level includes the ones below it."""

    READ = 1  # read flags, history, evaluate, the event stream
    WRITE = 2  # create, change, roll back, promote and delete flags; propose and apply change requests
    APPROVE = 3  # approve or reject others' change requests (docs/changes.md)
    ADMIN = 4  # manage tokens and users

    # The same levels under their role names (aliases: Permission.VIEWER is Permission.READ).
    VIEWER = 1
    EDITOR = 2
    APPROVER = 3

    @property
    def label(self) -> str:
        """The scope word: ``read``, ``write``, ``approve`` or ``admin`` (stored; tokens)."""
        return self.name.lower()

    @property
    def role(self) -> str:
        """The role word: ``viewer``, ``editor``, ``approver`` or ``admin`` (users)."""
        return _ROLES[self]

    @classmethod
    def parse(cls, text: str) -> Permission:
        """A level from its scope word or its role word (case-insensitive); :class:`RoleError` else."""
        level = _BY_WORD.get(text.strip().lower())
        if level is None:
            words = ", ".join(sorted(_BY_WORD))
            raise RoleError(f"unknown scope or role {text!r}: use one of {words}")
        return level


Role = Permission
"""The role vocabulary's name for :class:`Permission` (one class: ``Role.EDITOR is Permission.WRITE``)."""

_ROLES = {
    Permission.READ: "viewer",
    Permission.WRITE: "editor",
    Permission.APPROVE: "approver",
    Permission.ADMIN: "admin",
}
_BY_WORD = {**{p.label: p for p in Permission}, **{word: p for p, word in _ROLES.items()}}

LEVELS: tuple[Permission, ...] = tuple(Permission)
"""Every level, lowest first."""
