"""``flagstaff serve`` and ``flagstaff token``: the server and its tokens from the command line.

Registered through :data:`flagstaff.cli.EXTENSIONS`. The server's dependencies
(the ``server`` extra) are imported inside the commands, so ``flagstaff --help``
works on a core install.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from collections.abc import Callable
from typing import Any

from flagstaff.admin import Admin, validate_documents
from flagstaff.errors import ConflictError
from flagstaff.http.tokens import Scope, TokenError, TokenStore, default_token_db
from flagstaff.stores import Store

__all__ = ["register", "seed"]

log = logging.getLogger("flagstaff.http.cli")

Command = Callable[[str, Callable[[argparse.Namespace, Any], int], str], Any]


def register(command: Command) -> None:
    """Add ``serve`` and ``token`` to the ``flagstaff`` command line."""
    p = command("serve", cmd_serve, "serve the HTTP API and the dashboard over a store")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--open", action="store_true", help="no token needed from loopback (loopback hosts only)")
    p.add_argument("--seed", metavar="FILE", help="create the flags in FILE that do not exist yet")
    p.add_argument("--login-link", action="store_true", help="print a dashboard link with a new admin token")
    p.add_argument("--token-db", metavar="PATH", help="token database (default: beside a SQLite store)")
    p.add_argument("--log-format", choices=("json", "text"), default="json", help="log lines (default json)")
    p.add_argument(
        "--log-level", choices=("debug", "info", "warning"), default="info", help="info logs each request"
    )
    p.add_argument(
        "--stale-days", type=float, default=30.0, help="temporary flags unchanged this long are stale"
    )
    p = command("token", cmd_token, "API tokens: create NAME --scope S, list, revoke ID")
    p.add_argument("action", choices=("create", "list", "revoke"))
    p.add_argument("arg", nargs="?", metavar="NAME|ID", help="the new token's name, or the id to revoke")
    p.add_argument(
        "--scope", choices=("read", "write", "admin"), default="read", help="(create) default read"
    )
    p.add_argument("--token-db", metavar="PATH", help="token database (default: beside a SQLite store)")


def _usage(message: str) -> Exception:
    from flagstaff.cli import UsageError

    return UsageError(message)


# --------------------------------------------------------------------------- token


def cmd_token(args: argparse.Namespace, out: Any) -> int:
    tokens = TokenStore(args.token_db or default_token_db(args.store))
    try:
        if args.action == "create":
            if not args.arg:
                raise _usage("token create needs a NAME (who or what will use the token)")
            info, secret = tokens.create(args.arg, Scope.parse(args.scope))
            if out.json:
                out.emit({**info.to_dict(), "token": secret})
            else:
                out.note(
                    f"created {info.scope.label} token {info.id} for {info.name!r}; it is shown only once:"
                )
                out.line(secret)
        elif args.action == "list":
            listed = tokens.list()
            if out.json:
                out.emit([t.to_dict() for t in listed])
            else:
                rows = [[t.id, t.name, t.scope.label, _when(t.created_at), _when(t.revoked_at),
                         _when(t.last_used)] for t in listed]  # fmt: skip
                out.table(["id", "name", "scope", "created", "revoked", "last used"], rows)
        else:
            if not args.arg:
                raise _usage("token revoke needs the token's ID (see: flagstaff token list)")
            info = tokens.revoke(args.arg)
            if out.json:
                out.emit(info.to_dict())
            else:
                out.line(f"revoked token {info.id} ({info.name!r}); it stops working at once")
    except TokenError as exc:
        raise _usage(str(exc)) from None
    finally:
        tokens.close()
    return 0


def _when(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    import datetime as dt

    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


# --------------------------------------------------------------------------- serve


def seed(store: Store, documents: dict[str, Any], author: str) -> list[str]:
    """Create the flags of ``documents`` that the store does not have (all validated first).

    Existing flags are never touched, so restarting with ``--seed`` loses no edit.
    Returns the names created.
    """
    validate_documents(documents)
    admin = Admin(store, author=author)
    existing = store.load().records
    created = []
    for name in sorted(documents):
        if name in existing:
            continue
        try:
            admin.set(name, documents[name], expect=0)
        except ConflictError:  # created meanwhile by someone else: theirs wins
            continue
        created.append(name)
    return created


def cmd_serve(args: argparse.Namespace, out: Any) -> int:
    try:
        import uvicorn

        from flagstaff.http.app import JsonFormatter, Settings, create_app
        from flagstaff.http.auth import is_loopback
    except ImportError as exc:
        hint = "pip install 'flagstaff[server]'"
        raise _usage(f"flagstaff serve needs the server extra ({exc.name}): {hint}") from None
    if args.open and not is_loopback(args.host) and args.host != "localhost":
        raise _usage(f"--open is for loopback only; refusing to serve {args.host} without tokens")
    _configure_logging(args.log_format, JsonFormatter, "debug" if args.debug else args.log_level)
    from flagstaff.cli import read_flag_set

    documents = read_flag_set(args.seed) if args.seed else None
    sock = _bind(args.host, args.port)
    app = create_app(
        args.store, open_mode=args.open, token_db=args.token_db, settings=Settings(stale_days=args.stale_days)
    )
    state = app.state.flagstaff
    try:
        if documents is not None:
            created = seed(state.store, documents, args.author)
            log.info("seeded %d new flag(s) from %s", len(created), args.seed, extra={"flags": created})
        port = sock.getsockname()[1]
        shown = "127.0.0.1" if args.host in ("0.0.0.0", "") else args.host
        base = f"http://{shown}:{port}" if ":" not in shown else f"http://[{shown}]:{port}"
        if args.login_link:
            token = state.login_token()
            out.line(f"Open {base}/login?token={token}")
            out.note("(the link's admin token is revoked when this server stops)")
        else:
            out.line(
                f"Serving {base} (API under {base}/api/v1; {'open mode' if args.open else 'tokens required'})"
            )
        out.stdout.flush()
        config = uvicorn.Config(
            app, lifespan="on", access_log=False, log_config=None, timeout_graceful_shutdown=5
        )
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        # uvicorn re-raises a caught SIGTERM/SIGINT once shut down, so this may not run; the
        # app's lifespan has closed the state (and revoked the login link's token) by then.
        state.close()
        sock.close()
    return 0


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise _usage(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def _configure_logging(fmt: str, json_formatter: type[logging.Formatter], level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        json_formatter()
        if fmt == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
