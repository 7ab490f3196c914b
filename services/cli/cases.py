"""`sightline cases ...`: open, list, show, close and export a case file from the server's command line.

The same CaseService the web app uses; every act is audited under the case's number, as over HTTP. Also the
opener every case-bound command uses, so that a closed case takes no more searching from the CLI either.
"""
from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from models.records import InputError
from services.cases import CaseConflict, CaseForbidden
from services.cli.accounts import cli_actor, cli_user, record, require_case
from services.cli.common import open_system, print_json
from services.evidence import NoFont
from services.system import Sightline


@contextmanager
def case_system(args: argparse.Namespace) -> Iterator[tuple[Sightline, tuple[str, str]]]:
    """The opened system and the (case, reason) a query names; a registered case that is closed is refused."""
    ref, reason = require_case(args)
    with open_system(args) as system:
        try:
            registered = system.cases.check_query(ref, cli_user())
        except (CaseConflict, CaseForbidden) as exc:
            raise InputError(str(exc)) from None
        yield system, (registered, reason)


def cmd_cases(args: argparse.Namespace) -> int:
    with open_system(args) as system:
        if args.action == "list":
            print_json(system.cases.find(args.status))
            return 0
        if not args.ref:
            raise InputError(f"cases {args.action} needs the case number")
        if args.action == "open":
            try:
                case = system.cases.create(args.ref, args.title or "", args.reason or "", cli_actor(), args.zone)
            except CaseConflict as exc:
                raise InputError(str(exc)) from None
            record(system, "cases open", {"title": args.title, "zone": case.zone}, (case.ref, case.reason))
            print_json(case)
            return 0
        found = system.cases.by_ref(args.ref)
        if found is None:
            raise InputError(f"no case numbered {args.ref!r}: `sightline cases list` shows them")
        audited = (found.ref, args.reason or found.reason)
        if args.action == "show":
            record(system, "cases show", {}, audited)
            print_json(system.cases.file(found.id))
        elif args.action == "close":
            try:
                print_json(system.cases.close(found.id, cli_user()))
            except (CaseConflict, CaseForbidden) as exc:
                raise InputError(str(exc)) from None
            record(system, "cases close", {}, audited)
        else:  # export
            out = Path(args.out or f"{found.id}.zip")
            if out.exists() or not out.parent.is_dir():
                raise InputError(f"{out} exists already or its folder does not: name a new file with --out")
            try:
                package = system.evidence.package(found.id, cli_actor(), args.lang)
            except NoFont as exc:
                raise InputError(str(exc)) from None
            out.write_bytes(package.data)
            record(system, "cases export", {"out": str(out), "lang": args.lang}, audited, package.sightings)
            print_json({"file": str(out), "bytes": len(package.data), "sightings": package.sightings})
    return 0


def add_case_commands(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("cases", help="case files: open, list, show, close, export an evidence package")
    c.add_argument("action", choices=["open", "list", "show", "close", "export"])
    c.add_argument("ref", nargs="?", help="the case number (e.g. 2026-118)")
    c.add_argument("--title")
    c.add_argument("--reason", help="open: why the case exists; show/export: why you read it (audited)")
    c.add_argument("--status", choices=["open", "closed"], help="list: only these")
    c.add_argument("--zone", help="open: the IANA time zone its report prints times in, e.g. Asia/Shanghai "
                   "(default UTC)")
    c.add_argument("--out", help="export: the ZIP file to write (default CASE-ID.zip)")
    c.add_argument("--lang", choices=["en", "zh"], default="en", help="export: the report's language")
    c.set_defaults(func=cmd_cases)
