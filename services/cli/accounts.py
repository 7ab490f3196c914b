"""`sightline users ...` and `sightline audit ...`, and the CLI's own audit entries.

The command line is run by whoever holds the data folder (an operator on the server): its acts are
recorded as `cli:<login name>`, and its searches must name a case and a reason like the API's.
"""
from __future__ import annotations

import argparse
import getpass
import json
import sys

from models.records import InputError
from services.cli.common import open_system, print_json
from services.system import Sightline


def cli_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name in a bare container
        return "cli:unknown"


def case_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--case", help="the case this query serves (required; audited)")
    parser.add_argument("--reason", help="why (required; audited)")


def require_case(args: argparse.Namespace) -> tuple[str, str]:
    case_ref, reason = (getattr(args, "case", None) or "").strip(), (getattr(args, "reason", None) or "").strip()
    if not case_ref or not reason:
        raise InputError("a search must say which case it serves and why: give --case REF and --reason TEXT")
    if len(case_ref) > 64 or len(reason) > 500:
        raise InputError("--case is at most 64 characters and --reason at most 500")
    return case_ref, reason


def record(system: Sightline, action: str, params: dict[str, object], case: tuple[str, str] | None = None,
           result_count: int | None = None, status: int = 0) -> None:
    """One audit entry for a command (the CLI's exit status in `status`)."""
    system.audit.record(cli_actor(), "operator", action, "cli", case[0] if case else None, case[1] if case else None,
                        params, result_count, status)


def cmd_users(args: argparse.Namespace) -> int:
    with open_system(args) as system:
        accounts = system.accounts
        if args.action == "list":
            print_json([{"name": u.name, "role": u.role.label, "disabled": u.disabled,
                         "created_at": u.created_at} for u in accounts.all()])
            return 0
        if not args.name:
            raise InputError(f"users {args.action} needs a NAME")
        if args.action == "add":
            if not args.role:
                raise InputError("users add needs --role viewer|investigator|supervisor|admin")
            user, token = accounts.add(args.name, args.role)
        elif args.action == "rotate":
            user, token = accounts.rotate(args.name)
        else:
            user, token = accounts.disable(args.name, args.action == "disable"), None
        record(system, f"users {args.action}", {"name": user.name, "role": user.role.label})
        line = {"name": user.name, "role": user.role.label, "disabled": user.disabled}
        if token:
            line["token"] = token  # shown this once; only its hash is kept
        print(json.dumps(line, ensure_ascii=False))
        return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from geo.trajectories import parse_range

    with open_system(args) as system:
        if args.action == "verify":
            result = system.audit.verify()
            if not result.ok:
                print(f"sightline: the audit log is broken at entry {result.first_broken}: {result.problem}",
                      file=sys.stderr)
                return 1
            print(f"the audit log holds: {result.entries} entries, every hash links")
            return 0
        start, end = parse_range(args.start, args.end)
        found = system.audit.entries(args.user, args.case, args.action_name, start, end, args.limit, 0, args.about)
        print_json(found)
        return 0


def add_account_commands(sub: argparse._SubParsersAction) -> None:
    u = sub.add_parser("users", help="accounts: add, list, disable, enable, rotate a token")
    u.add_argument("action", choices=["add", "list", "disable", "enable", "rotate"])
    u.add_argument("name", nargs="?")
    u.add_argument("--role", choices=["viewer", "investigator", "supervisor", "admin"])
    u.set_defaults(func=cmd_users)
    a = sub.add_parser("audit", help="the audit log: verify its hash chain, or list entries")
    a.add_argument("action", choices=["verify", "list"])
    a.add_argument("--user")
    a.add_argument("--case")
    a.add_argument("--action", dest="action_name", help="e.g. 'GET /search/plates'")
    a.add_argument("--about", help="entries whose parameters mention this (a plate, an id)")
    a.add_argument("--start")
    a.add_argument("--end")
    a.add_argument("--limit", type=int, default=100)
    a.set_defaults(func=cmd_audit)
