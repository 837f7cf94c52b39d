"""``flagstaff import --format rollout|hanoi|reddit``: the seeds' stored flags into a store.

The core CLI's ``import`` hands over here when ``--format`` names a seed (see
``docs/migration.md``)::

    flagstaff import --format rollout --from redis://old:6379/0 --to sqlite:///flagstaff.db --dry-run
    flagstaff import --format hanoi --from redis://old:6379/1 --to sqlite:///flagstaff.db
    flagstaff import --format reddit live.ini --to sqlite:///flagstaff.db

Every flag is listed with what happens to it (``create``, ``update``,
``unchanged``, ``keep``: it exists with another document and ``--overwrite`` was
not given, ``invalid``: never written) and the notes of the reader (what does not
carry over exactly). ``--dry-run`` writes nothing. The exit code is 1 when a
flag was invalid, else 0.
"""

from __future__ import annotations

import argparse
import json

from flagstaff.cli._output import EXIT, Out, UsageError
from flagstaff.cli._registry import Commands
from flagstaff.compat import migrate

__all__ = ["FORMATS", "add_import_arguments", "import_seed", "register", "wants"]

FORMATS = ("flagstaff", *migrate.SOURCES)
"""``flagstaff import --format``: flagstaff's own files and stores, or a seed's data."""

_SEED_OPTIONS = ("dry_run", "overwrite", "rollout_formula", "randomize_percentage", "hanoi_rule")


def register(commands: Commands) -> None:
    """Give ``flagstaff import`` its seed formats (listed in :data:`flagstaff.cli.EXTENSIONS`)."""
    add_import_arguments(commands.parser("import"))
    commands.hand_over("import", wants, import_seed)


def add_import_arguments(parser: argparse.ArgumentParser) -> None:
    """The seed-import options of ``flagstaff import``."""
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="flagstaff",
        help="what FILE or --from holds: flagstaff flags (default), or a seed's data to migrate "
        "(rollout, hanoi: a redis:// URL; reddit: a live-config file)",
    )
    parser.add_argument("--dry-run", action="store_true", help="seed import: show what would be written")
    parser.add_argument("--overwrite", action="store_true", help="seed import: replace flags that differ")
    parser.add_argument(
        "--rollout-formula",
        choices=[f.value for f in migrate.RolloutFormula],
        help="the rollout gem version that wrote the data (default 2.4.2: 2.4.2 to 2.6)",
    )
    parser.add_argument(
        "--randomize-percentage", action="store_true", help="the gem ran with randomize_percentage"
    )
    parser.add_argument(
        "--hanoi-rule",
        choices=[r.value for r in migrate.HanoiRule],
        help="code (default): keep the users hanoi 0.0.4 served; readme: its README's rule",
    )


def wants(args: argparse.Namespace) -> bool:
    """Whether ``flagstaff import`` with ``args`` is a seed import (or misuses its options)."""
    return args.format != "flagstaff" or any(getattr(args, o) for o in _SEED_OPTIONS)


def import_seed(args: argparse.Namespace, out: Out) -> int:
    """Run ``flagstaff import --format KIND`` (the arguments of the core ``import``)."""
    if args.format == "flagstaff":
        given = [f"--{o.replace('_', '-')}" for o in _SEED_OPTIONS if getattr(args, o)]
        raise UsageError(
            f"{', '.join(given)}: only with --format {'|'.join(migrate.SOURCES)} "
            "(to preview a flags file, use `flagstaff diff FILE`)"
        )
    if args.prune:
        raise UsageError("--prune is for flagstaff files; a seed import never deletes flags")
    if (args.file is None) == (args.from_ is None):
        raise UsageError(f"import --format {args.format} needs the source: FILE or --from URL (one)")
    source = args.file if args.file is not None else args.from_
    target = args.to or args.store
    options: dict[str, object] = {}
    if args.rollout_formula is not None or args.randomize_percentage:
        if args.format != "rollout":
            raise UsageError("--rollout-formula and --randomize-percentage are for --format rollout")
        if args.rollout_formula is not None:
            options["formula"] = args.rollout_formula
        options["randomize_percentage"] = args.randomize_percentage
    if args.hanoi_rule is not None:
        if args.format != "hanoi":
            raise UsageError("--hanoi-rule is for --format hanoi")
        options["rule"] = args.hanoi_rule
    try:
        actions = migrate.run_import(
            args.format,
            source,
            target,
            dry_run=args.dry_run,
            overwrite=args.overwrite,
            author=args.author,
            **options,
        )
    except migrate.MigrationError as exc:
        raise UsageError(str(exc)) from exc
    except OSError as exc:
        raise UsageError(f"cannot read {source}: {exc.strerror or exc}") from None
    invalid = sum(a.kind == "invalid" for a in actions)
    if out.json:
        out.emit(
            {
                "dry_run": args.dry_run,
                "target": target,
                "flags": [
                    {
                        "name": a.name,
                        "action": a.kind,
                        "document": json.loads(a.document) if a.document else None,
                        "notes": list(a.notes),
                    }
                    for a in actions
                ],
            }
        )
    else:
        for a in actions:
            out.line(f"{a.kind:9}  {a.name}  {a.document}")
            for note in a.notes:
                out.line(f"           note: {note}")
        counts = {kind: sum(a.kind == kind for a in actions) for kind in migrate.ACTION_KINDS}
        summary = ", ".join(f"{n} {kind}" for kind, n in counts.items() if n)
        verb = "would write" if args.dry_run else "wrote"
        written = counts["create"] + counts["update"]
        out.note(f"{target}: {verb} {written} of {len(actions)} flags ({summary or 'none found'})")
    return EXIT.NO if invalid else EXIT.OK
