"""`sightline users ...` and `sightline audit ...`, and the CLI's own audit entries.

The command line is run by whoever holds the data folder (an operator on the server): its acts are
recorded as `cli:<login name>`, and its searches must name a case and a reason like the API's.
"""
from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path

from models.accounts import Role, User
from models.records import InputError
from services.audit import Checkpoint
from services.cases import query_purpose
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


def cli_user() -> User:
    """The operator at the server's console: may do what an admin may (who can open the data folder can anyway),
    and so reads every case and closes any, but changes only cases that name it."""
    return User("cli", cli_actor(), Role.ADMIN)


def require_case(args: argparse.Namespace) -> tuple[str, str]:
    """--case and --reason, checked as the API checks its headers."""
    return query_purpose(getattr(args, "case", None), getattr(args, "reason", None), ("--case", "--reason"))


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
            points = [Checkpoint.from_file(Path(p)) for p in args.checkpoint or []]
            result = system.audit.verify(points)
            if not result.ok:
                where = f" at entry {result.first_broken}" if result.first_broken else ""
                print(f"sightline: the audit log is broken{where}: {result.problem}", file=sys.stderr)
                return 1
            unkeyed = f" ({result.unkeyed} from before keying, chained only)" if result.unkeyed else ""
            entries = f"{result.entries} entr{'y' if result.entries == 1 else 'ies'}"
            print(f"the audit log holds: {entries}{unkeyed}, each sealed and linked; "
                  f"{len(points) + 1} signed checkpoint(s) hold")
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
    a.add_argument("--checkpoint", action="append", metavar="FILE",
                   help="verify: also hold the log against this checkpoint (a JSON file or an evidence package ZIP)")
    a.set_defaults(func=cmd_audit)
