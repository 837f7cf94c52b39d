"""``flagstaff change``: propose, list, show, approve, reject, cancel and apply change requests.

Against a server (``--url URL`` or ``$FLAGSTAFF_URL``, with the token in ``$FLAGSTAFF_TOKEN``,
never an argument, so it stays out of shell history and ``ps``)::

    $ export FLAGSTAFF_URL=https://flags.internal FLAGSTAFF_TOKEN=fst_...
    $ flagstaff change propose new_checkout --document '{"percentage": 50}' --comment "to half"
    $ flagstaff change approve 3           # with another person's approve token
    $ flagstaff change apply 3

Without a URL it works on the store (``--store``) and the change database beside its
token database, as ``flagstaff serve`` would find them; the identity is ``--author``.
A refused apply (the flag changed after the proposal) prints what changed and exits 4.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import urllib.error
import urllib.request
from typing import Any

from flagstaff.cli._output import EXIT, Failed, Out, UsageError
from flagstaff.cli._registry import Commands
from flagstaff.errors import ConflictError, NotFoundError, StoreUnavailable, ValidationError

__all__ = ["cmd_change", "register"]

URL_ENV = "FLAGSTAFF_URL"
TOKEN_ENV = "FLAGSTAFF_TOKEN"
ACTIONS = ("propose", "list", "show", "approve", "reject", "cancel", "apply")


def register(command: Commands) -> None:
    """Add ``flagstaff change`` (see the module doc)."""
    p = command(
        "change", cmd_change, "change requests: propose FLAG, list, show/approve/reject/cancel/apply ID"
    )
    p.add_argument("action", choices=ACTIONS)
    p.add_argument(
        "arg", nargs="?", metavar="FLAG|ID", help="the flag to propose a change to, or the request"
    )
    p.add_argument("--document", metavar="JSON", help="(propose) the new document, as JSON")
    p.add_argument("--file", metavar="PATH", help="(propose) read the new document from a JSON file")
    p.add_argument("--comment", default="", help="(propose) why")
    p.add_argument("--apply-at", metavar="TIME", help="(propose) ISO 8601 time with offset: applied then")
    p.add_argument("--reason", default="", help="(reject) why")
    p.add_argument("--status", help="(list) only requests in this status")
    p.add_argument("--url", default=None, help=f"server URL (default ${URL_ENV}; none: the local store)")


def cmd_change(args: argparse.Namespace, out: Out) -> int:
    url = args.url or os.environ.get(URL_ENV)
    if args.action == "list":
        path, body, method = "", None, "GET"
        if args.status:
            path = f"?status={args.status}"
    else:
        if not args.arg:
            raise UsageError(
                f"change {args.action} needs a {'FLAG' if args.action == 'propose' else 'request ID'}"
            )
        if args.action == "propose":
            body = _proposal(args)
            path, method = "", "POST"
        else:
            if not args.arg.isdigit():
                raise UsageError(
                    f"{args.arg!r} is not a change request ID (a number; see: flagstaff change list)"
                )
            method = "GET" if args.action == "show" else "POST"
            path = f"/{args.arg}" + ("" if args.action == "show" else f"/{args.action}")
            body = {"reason": args.reason} if args.action == "reject" and args.reason else None
    answer = _remote(url, method, path, body) if url else _local(args, method, path, body)
    _print(out, args.action, answer)
    return EXIT.OK


def _proposal(args: argparse.Namespace) -> dict[str, Any]:
    if (args.document is None) == (args.file is None):
        raise UsageError("change propose needs the new document: --document JSON or --file PATH")
    try:
        if args.file is not None:
            with open(args.file, encoding="utf-8") as f:
                document = json.load(f)
        else:
            document = json.loads(args.document)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the document: {exc}") from None
    body: dict[str, Any] = {"flag": args.arg, "document": document, "comment": args.comment}
    if args.apply_at:
        body["apply_at"] = args.apply_at
    return body


def _print(out: Out, action: str, answer: dict[str, Any]) -> None:
    if out.json:
        out.emit(answer)
        return
    if action == "list":
        rows = [
            [c["id"], c["flag"], c["status"], c["proposer_name"], c.get("approver_name") or "", c["comment"]]
            for c in answer["change_requests"]
        ]
        out.table(["id", "flag", "status", "proposed by", "approved by", "comment"], rows)
        return
    c = answer
    out.line(f"change request #{c['id']} for {c['flag']!r}: {c['status']}")
    out.line(f"  proposed by {c['proposer_name']} on version {c['base_version']}")
    if c.get("approver_name"):
        out.line(f"  approved by {c['approver_name']}")
    if c.get("applied_version"):
        out.line(f"  applied as version {c['applied_version']}")
    for change in c.get("changes", []):
        before, after = json.dumps(change["before"]), json.dumps(change["after"])
        out.line(f"  {change['path'] or '(document)'}: {before} -> {after}")


# --------------------------------------------------------------------------- remote


def _remote(url: str, method: str, path: str, body: Any) -> dict[str, Any]:
    token = os.environ.get(TOKEN_ENV)
    if not token:
        raise UsageError(f"set ${TOKEN_ENV} to an API token for {url}")
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{url.rstrip('/')}/api/v1/change-requests{path}", data=data, method=method
    )
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            answer: dict[str, Any] = json.loads(response.read())
            return answer
    except urllib.error.HTTPError as exc:
        try:
            error = json.loads(exc.read())
        except ValueError:
            error = {"error": f"HTTP {exc.code}"}
        raise _http_error(exc.code, error) from None
    except (urllib.error.URLError, OSError) as exc:
        raise StoreUnavailable(f"cannot reach {url}: {exc}") from None


class StaleChange(ConflictError):
    """An apply refused because the flag changed after the proposal: what changed, in the message."""

    def __init__(self, message: str, unified: str) -> None:
        Exception.__init__(self, f"{message}\n{unified}" if unified else message)
        self.name, self.expected, self.actual = "", None, None


def _http_error(status: int, error: dict[str, Any]) -> Exception:
    message = str(error.get("error", f"HTTP {status}"))
    if status == 404:
        return Failed(message) if "change request" not in message else _not_found(message)
    if error.get("code") == "stale":
        return StaleChange(message, str(error.get("stale", {}).get("unified", "")))
    if status >= 500:
        return StoreUnavailable(message)
    if status in (400, 401):
        return UsageError(message)
    return Failed(message)


def _not_found(message: str) -> NotFoundError:
    exc = NotFoundError(message)
    exc.args = (message,)
    return exc


# --------------------------------------------------------------------------- local


def _local(args: argparse.Namespace, method: str, path: str, body: Any) -> dict[str, Any]:
    """The same operations on the local store and change database (no server, no scheduler:
    a due request is applied by ``flagstaff serve``, or here with ``apply``). The identity is
    ``--author``; the four-eyes rule holds between authors."""
    try:
        from flagstaff.admin import default_author
        from flagstaff.http.state import ServerState, Settings
        from flagstaff.http.tokens import TokenStore, default_token_db
        from flagstaff.stores import open_store
    except ImportError as exc:
        raise UsageError(f"flagstaff change needs the server extra ({exc.name}), or --url") from None
    store = open_store(args.store)
    try:
        state = ServerState(
            store, tokens=TokenStore(default_token_db(store.url)), settings=Settings(events_db="")
        )
    except BaseException:
        store.close()
        raise
    try:
        return _run_local(state, args.author or default_author(), method, path, body)
    finally:
        state.close()
        store.close()


def _run_local(state: Any, author: str, method: str, path: str, body: Any) -> dict[str, Any]:
    from starlette.exceptions import HTTPException

    from flagstaff.admin import parse_document
    from flagstaff.changes import ChangeRequestError, Proposal, SelfApproval, Status, WrongStatus
    from flagstaff.http.api.changes import change_view, parse_apply_at
    from flagstaff.http.scheduler import StaleProposal, apply_change

    me = f"local:{author}"
    changes = state.changes
    try:
        if method == "GET" and not path.startswith("/"):
            status = path.partition("=")[2] or None
            found = changes.list(status=Status(status) if status else None)
            return {"change_requests": [change_view(state, c) for c in found]}
        if path == "":  # propose
            parse_document(body["flag"], body["document"])
            record = state.store.get(body["flag"])
            proposal = Proposal(
                body["flag"],
                body["document"],
                0 if record is None else record.version,
                body["comment"],
                parse_apply_at(body.get("apply_at")),
            )
            return change_view(state, changes.propose(proposal, proposer=me, proposer_name=author))
        change_id_text, _, action = path.lstrip("/").partition("/")
        change_id = int(change_id_text)
        if action == "":
            change = changes.get(change_id)
        elif action == "approve":
            change = changes.approve(change_id, approver=me, approver_name=author)
        elif action == "reject":
            change = changes.reject(change_id, by=author, note=(body or {}).get("reason", ""))
        elif action == "cancel":
            change = changes.cancel(change_id, by=author)
        else:
            change = changes.get(change_id)
            if (
                change.status is Status.APPROVED
                and change.apply_at is not None
                and change.apply_at > time.time()
            ):
                raise Failed(f"change request #{change_id} is scheduled: flagstaff serve applies it then")
            change = apply_change(state, change_id, by=author, request_id="cli")
        return change_view(state, change)
    except StaleProposal as exc:
        raise StaleChange(str(exc), str(exc.details.get("unified", ""))) from None
    except (SelfApproval, WrongStatus) as exc:
        raise Failed(str(exc)) from None
    except ValidationError:
        raise
    except (ChangeRequestError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    except HTTPException as exc:
        raise UsageError(str(exc.detail)) from None
