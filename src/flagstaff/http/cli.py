"""``flagstaff serve`` and ``flagstaff token``: the server and its tokens from the command line.

Registered through :data:`flagstaff.cli.EXTENSIONS`. The server's dependencies
(the ``server`` extra) are imported inside the commands, so ``flagstaff --help``
works on a core install.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sqlite3
import sys
from collections.abc import Callable
from typing import Any

from flagstaff.admin import Admin, validate_documents
from flagstaff.document import is_segment_key
from flagstaff.errors import ConflictError
from flagstaff.http.environments import (
    DEFAULT,
    EnvironmentConfigError,
    check_name,
    checked,
    load_environments,
    parse_environment,
)
from flagstaff.http.roles import RoleError
from flagstaff.http.tokens import Permission, TokenError, TokenStore, default_token_db
from flagstaff.stores import Store

__all__ = ["register", "seed"]

log = logging.getLogger("flagstaff.http.cli")

Command = Callable[[str, Callable[[argparse.Namespace, Any], int], str], Any]


def register(command: Command) -> None:
    """Add ``serve`` and ``token`` to the ``flagstaff`` command line."""
    p = command("serve", cmd_serve, "serve the HTTP API and the dashboard over a store")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="admit local programs as admin without a token (loopback socket, no proxy headers; "
        "loopback hosts only; never with a proxy or tunnel on this host)",
    )
    # Replaced by --insecure-no-auth; kept only to say so (a script using it must not start open).
    p.add_argument("--open", action="store_true", help=argparse.SUPPRESS)
    p.add_argument(
        "--forwarded-allow-ips",
        metavar="ADDRS",
        help="proxies (comma-separated addresses or networks) whose X-Forwarded-For/-Proto are "
        "honoured (default: none; the client is the socket's peer)",
    )
    p.add_argument(
        "--header-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="close a connection that has not sent a complete request head in S seconds (default 10)",
    )
    p.add_argument(
        "--login-link-seconds",
        type=float,
        default=600.0,
        metavar="S",
        help="how long the --login-link can be used, once (default 600)",
    )
    p.add_argument(
        "--env",
        action="append",
        metavar="NAME=URL",
        dest="envs",
        help="serve environment NAME over store URL (repeatable; the first is the default, "
        "served at the usual URLs; others under /envs/NAME and /api/v1/envs/NAME)",
    )
    p.add_argument(
        "--environments",
        metavar="FILE",
        help='environments from a JSON file: {"production": "URL", "staging": "URL"} (first: default)',
    )
    p.add_argument(
        "--oidc-issuer",
        metavar="URL",
        help="single sign-on: the OpenID Connect provider (sso extra; default $FLAGSTAFF_OIDC_ISSUER)",
    )
    p.add_argument(
        "--oidc-client-id",
        metavar="ID",
        help="single sign-on: the client id (default $FLAGSTAFF_OIDC_CLIENT_ID)",
    )
    p.add_argument(
        "--oidc-client-secret",
        metavar="SECRET",
        help="single sign-on: the client secret (default $FLAGSTAFF_OIDC_CLIENT_SECRET; prefer it: "
        "arguments are visible to other users of the host)",
    )
    p.add_argument("--oidc-username-claim", default="email", metavar="CLAIM", help="default email")
    p.add_argument(
        "--oidc-default-role",
        metavar="ROLE",
        help="the role, in every environment, of a user signing in for the first time (default: none)",
    )
    p.add_argument("--oidc-redirect-url", metavar="URL", help="the callback URL registered with the provider")
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
    p.add_argument(
        "--guard-interval",
        type=float,
        default=60.0,
        metavar="S",
        help="check and enforce every flag's guardrails from the event store every S seconds "
        "(default 60; 0: off)",
    )
    p.add_argument(
        "--requires-approval",
        action="store_true",
        help="flag writes need an approved change request (docs/changes.md); the kill switch still works",
    )
    p.add_argument(
        "--approval-env",
        action="append",
        default=[],
        metavar="NAME",
        help="writes in environment NAME need an approved change request (repeatable; "
        "--requires-approval asks it everywhere)",
    )
    p.add_argument(
        "--requires-comment",
        action="store_true",
        help="every flag change through the API must say why (a comment); the kill switch needs none",
    )
    p.add_argument(
        "--comment-env",
        action="append",
        default=[],
        metavar="NAME",
        help="changes in environment NAME must carry a comment (repeatable)",
    )
    p.add_argument(
        "--client-origins",
        metavar="ORIGINS",
        default="",
        help="origins (comma-separated, or '*') whose pages may call /api/v1/client/evaluate "
        "(docs/clientside.md)",
    )
    for option, default, what in (
        ("--client-key-rate", 50.0, "requests per second one client key may make, on average"),
        ("--client-key-burst", 200.0, "requests one client key may make at once, above its rate"),
        ("--client-address-rate", 2.0, "requests per second to the client-side endpoint from one address"),
        ("--client-address-burst", 30.0, "requests one address may make at once, above its rate"),
    ):
        p.add_argument(option, type=float, default=default, metavar="N", help=f"{what} (default {default:g})")
    p.add_argument(
        "--schedule-interval",
        type=float,
        default=5.0,
        metavar="S",
        help="look for approved change requests whose apply_at has come every S seconds (default 5)",
    )
    p = command("token", cmd_token, "API tokens: create NAME --scope S, list, revoke ID")
    p.add_argument("action", choices=("create", "list", "revoke"))
    p.add_argument("arg", nargs="?", metavar="NAME|ID", help="the new token's name, or the id to revoke")
    p.add_argument(
        "--scope", choices=("read", "write", "approve", "admin"), default="read", help="(create) default read"
    )
    p.add_argument("--token-db", metavar="PATH", help="token database (default: beside a SQLite store)")
    p.add_argument(
        "--env",
        action="append",
        metavar="NAME",
        dest="envs",
        help="(create) limit the token to environment NAME (repeatable; default: every environment)",
    )


def _port(text: str) -> int:
    # argparse's own message and exit 2, rather than bind()'s OverflowError traceback.
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port (0 to 65535; 0 picks a free one)")
    return port


def _token_db_error(path: str, exc: sqlite3.Error) -> Exception:
    # A token database that cannot be opened or written (a missing directory, no permission,
    # a read-only file) is the store being unavailable: one line and exit 5, not a traceback.
    from flagstaff.errors import StoreUnavailable

    return StoreUnavailable(f"cannot use the token database {path}: {exc}")


def _usage(message: str) -> Exception:
    from flagstaff.cli._output import UsageError

    return UsageError(message)


# --------------------------------------------------------------------------- token


def cmd_token(args: argparse.Namespace, out: Any) -> int:
    path = args.token_db or default_token_db(args.store)
    try:
        tokens = TokenStore(path)
    except sqlite3.Error as exc:
        raise _token_db_error(path, exc) from None
    try:
        if args.action == "create":
            if not args.arg:
                raise _usage("token create needs a NAME (who or what will use the token)")
            envs = [check_name(e) for e in args.envs] if args.envs else None
            info, secret = tokens.create(args.arg, Permission.parse(args.scope), environments=envs)
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
                         _when(t.last_used), ",".join(t.environments or ("*",))] for t in listed]  # fmt: skip
                out.table(["id", "name", "scope", "created", "revoked", "last used", "environments"], rows)
        else:
            if not args.arg:
                raise _usage("token revoke needs the token's ID (see: flagstaff token list)")
            info = tokens.revoke(args.arg)
            if out.json:
                out.emit(info.to_dict())
            else:
                out.line(f"revoked token {info.id} ({info.name!r}); it stops working at once")
    except (TokenError, RoleError, EnvironmentConfigError) as exc:
        raise _usage(str(exc)) from None
    except sqlite3.Error as exc:
        raise _token_db_error(path, exc) from None
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
    for name in _creation_order(documents):
        if name in existing:
            continue
        try:
            admin.set(name, documents[name], expect=0)
        except ConflictError:  # created meanwhile by someone else: theirs wins
            continue
        created.append(name)
    return created


def _creation_order(documents: dict[str, Any]) -> list[str]:
    """Segments first, then each flag after the flags it requires (by name otherwise), so
    the writer's reference checks find what a seeded flag names already written."""
    segments = sorted(n for n in documents if is_segment_key(n))
    pending = sorted(n for n in documents if not is_segment_key(n))
    order: list[str] = []
    placed: set[str] = set()
    while pending:
        ready = [n for n in pending if not (_requires(documents[n]) & (set(pending) - {n}))]
        if not ready:  # a cycle: the writer refuses it with the chain named
            ready = pending
        order += ready
        placed.update(ready)
        pending = [n for n in pending if n not in placed]
    return segments + order


def _requires(document: Any) -> set[str]:
    if not isinstance(document, dict) or not isinstance(document.get("prerequisites"), list):
        return set()
    names = set()
    for item in document["prerequisites"]:
        name = item.get("flag") if isinstance(item, dict) else item
        if isinstance(name, str):
            names.add(name)
    return names


def cmd_serve(args: argparse.Namespace, out: Any) -> int:
    try:
        import uvicorn

        from flagstaff.http.app import JsonFormatter, Settings, create_app
        from flagstaff.http.auth import is_loopback
        from flagstaff.http.serving import uvicorn_options
    except ImportError as exc:
        hint = "pip install 'flagstaff[server]'"
        raise _usage(f"flagstaff serve needs the server extra ({exc.name}): {hint}") from None
    if args.open:
        raise _usage(
            "--open was removed: it let any same-host proxy in as admin. Use a token "
            "(flagstaff serve --login-link), or --insecure-no-auth for local programs only"
        )
    if args.insecure_no_auth and not is_loopback(args.host) and args.host != "localhost":
        raise _usage(f"--insecure-no-auth is for loopback only; refusing to serve {args.host} without tokens")
    if args.insecure_no_auth and args.forwarded_allow_ips:
        raise _usage("--insecure-no-auth cannot be combined with --forwarded-allow-ips (a proxy in front)")
    if not args.header_timeout > 0 or not args.login_link_seconds > 0:
        raise _usage("--header-timeout and --login-link-seconds must be positive")
    if not args.guard_interval >= 0:
        raise _usage("--guard-interval must be 0 (off) or more seconds")
    # The comparison also refuses nan; inf would make a loop that never looks again.
    interval = args.schedule_interval
    if not 0 < interval < float("inf"):
        raise _usage(f"--schedule-interval must be a positive number of seconds, not {interval:g}")
    for option in ("client_key_rate", "client_key_burst", "client_address_rate", "client_address_burst"):
        value, flag = getattr(args, option), "--" + option.replace("_", "-")
        if not 0 < value < float("inf"):
            raise _usage(f"{flag} must be a positive number, not {value:g}")
        if option.endswith("burst") and value < 1:  # a bucket that never holds 1 token admits nothing
            raise _usage(f"{flag} must be at least 1 (a request), not {value:g}")
    _configure_logging(args.log_format, JsonFormatter, "debug" if args.debug else args.log_level)
    from flagstaff.cli._files import read_flag_set

    documents = read_flag_set(args.seed) if args.seed else None
    stores = _environments(args)
    default_url = args.store if isinstance(stores, str) else next(iter(stores.values()))
    sock = _bind(args.host, args.port)
    from flagstaff.http.clientside import ClientSide

    try:
        clientside = ClientSide(
            origins=tuple(o.strip() for o in args.client_origins.split(",") if o.strip()),
            key_rate=args.client_key_rate,
            key_burst=args.client_key_burst,
            address_rate=args.client_address_rate,
            address_burst=args.client_address_burst,
        )
    except ValueError as exc:
        raise _usage(f"--client-origins: {exc}") from None
    settings = Settings(
        stale_days=args.stale_days,
        login_link_seconds=args.login_link_seconds,
        guard_interval=args.guard_interval,
        requires_approval=args.requires_approval,
        approval_environments=_marked_environments(args, "requires_approval", args.approval_env),
        requires_comment=args.requires_comment,
        comment_environments=_marked_environments(args, "requires_comment", args.comment_env),
        clientside=clientside,
        schedule_interval=args.schedule_interval,
    )
    try:
        app = create_app(stores, open_mode=args.insecure_no_auth, token_db=args.token_db, settings=settings)
    except sqlite3.Error as exc:
        sock.close()
        raise _token_db_error(args.token_db or default_token_db(default_url), exc) from None
    except BaseException:
        sock.close()
        raise
    state = app.state.flagstaff
    try:
        _enable_sso(app, args)
        if documents is not None:
            created = seed(state.store, documents, args.author)
            log.info("seeded %d new flag(s) from %s", len(created), args.seed, extra={"flags": created})
        port = sock.getsockname()[1]
        shown = "127.0.0.1" if args.host in ("0.0.0.0", "") else args.host
        base = f"http://{shown}:{port}" if ":" not in shown else f"http://[{shown}]:{port}"
        if args.login_link:
            token = state.login_token()
            out.line(f"Open {base}/login?token={token}")
            out.note(
                f"(the link works once, for {args.login_link_seconds:g} s; "
                "its admin token is revoked when this server stops)"
            )
        else:
            mode = "INSECURE: no token needed from this host" if args.insecure_no_auth else "tokens required"
            out.line(f"Serving {base} (API under {base}/api/v1; {mode})")
        envs = app.state.environments
        if len(envs) > 1:
            others = ", ".join(f"{n} at {base}/envs/{n}/" for n in envs.names[1:])
            out.note(f"Environments: {envs.default} (default) at {base}/, {others}")
        out.stdout.flush()
        served = uvicorn_options(
            forwarded_allow_ips=args.forwarded_allow_ips, header_timeout=args.header_timeout
        )
        config = uvicorn.Config(
            app, lifespan="on", access_log=False, log_config=None, timeout_graceful_shutdown=5, **served
        )
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        # uvicorn re-raises a caught SIGTERM/SIGINT once shut down, so this may not run; the
        # app's lifespan has closed the state (and revoked the login link's token) by then.
        state.close()
        sock.close()
    return 0


def _enable_sso(app: Any, args: argparse.Namespace) -> None:
    """Single sign-on if ``--oidc-issuer`` (or ``$FLAGSTAFF_OIDC_ISSUER``) is given (the sso extra)."""
    import os

    issuer = args.oidc_issuer or os.environ.get("FLAGSTAFF_OIDC_ISSUER")
    if not issuer:
        return
    from flagstaff.http.oidc import OIDCConfig, SSOError, enable

    client_id = args.oidc_client_id or os.environ.get("FLAGSTAFF_OIDC_CLIENT_ID", "")
    secret = args.oidc_client_secret or os.environ.get("FLAGSTAFF_OIDC_CLIENT_SECRET", "")
    try:
        role = Permission.parse(args.oidc_default_role) if args.oidc_default_role else None
        config = OIDCConfig(
            issuer,
            client_id,
            secret,
            username_claim=args.oidc_username_claim,
            default_role=role,
            redirect_url=args.oidc_redirect_url,
        )
    except (SSOError, RoleError) as exc:
        raise _usage(str(exc)) from None
    try:
        enable(app, config)
    except ModuleNotFoundError as exc:
        raise _usage(str(exc)) from None


def _marked_environments(args: argparse.Namespace, key: str, named: list[str]) -> frozenset[str]:
    """The environments that ask ``key`` (``requires_approval``, ``requires_comment``): those
    named on the command line and those the environments file marks."""
    try:
        listed = load_environments(args.environments) if args.environments else []
    except EnvironmentConfigError as exc:
        raise _usage(str(exc)) from None
    names = {e.name for e in listed if getattr(e, key)} | set(named)
    known = ({e.name for e in listed} | {parse_environment(t).name for t in args.envs or ()}) or {DEFAULT}
    unknown = sorted(names - known)
    if unknown:
        option = "--approval-env" if key == "requires_approval" else "--comment-env"
        raise _usage(f"{option}: no environment named {', '.join(unknown)}")
    return frozenset(names)


def _environments(args: argparse.Namespace) -> str | dict[str, str]:
    """The store URL, or the environments ``--env``/``--environments`` name (in order)."""
    try:
        envs = load_environments(args.environments) if args.environments else []
        envs += [parse_environment(text) for text in args.envs or ()]
        if not envs:
            return str(args.store)
        return {e.name: e.url for e in checked(envs)}
    except EnvironmentConfigError as exc:
        raise _usage(str(exc)) from None


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on an accepted connection only when the
    # socket says it is TCP, and accepted sockets inherit the listener's proto. Without it every
    # keep-alive answer sent in two writes waited ~40 ms on Nagle and delayed ACKs.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
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
