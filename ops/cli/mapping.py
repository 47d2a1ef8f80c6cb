"""mlc mapping: Stampli codes to X3 accounts, dimensions and company/site routes."""

from __future__ import annotations

import argparse
import json
from typing import Any


def cmd_mapping_import(args: argparse.Namespace) -> int:
    from pipeline import db, mapping

    kind = {"gl": "gl", "cost-centers": "cost_centers", "dimension": "dimension",
            "route": "route"}[args.kind]
    if kind == "dimension":
        if len(args.args) != 2:
            raise SystemExit("mlc: mapping import dimension needs TYPE FILE.csv")
        dim_type, path = args.args
    elif len(args.args) != 1:
        raise SystemExit(f"mlc: mapping import {args.kind} needs FILE.csv")
    else:
        dim_type, path = None, args.args[0]
    from ops.progress import Progress

    with Progress(f"mapping import {args.kind}") as progress, db.transaction() as cur:
        n = mapping.import_csv(cur, kind, path, dimension_type=dim_type,
                               on_row=lambda done, total: progress.count(done, total, "rows"))
    print(f"{args.kind}{' ' + dim_type if dim_type else ''}: {n} row(s) mapped from {path}")
    return 0


# What `mapping list` prints: each mapping's title, then one line per row.
LISTING = (
    ("gl", "GL accounts (unmapped codes pass through unchanged):",
     "  {stampli_code:<20} -> {x3_account}"),
    ("cost_centers", "cost centers:", "  {stampli_code:<20} -> {dimension_type}={dimension_value}"),
    ("dimensions", "other dimensions (unmapped values pass through):",
     "  {dimension_type} {stampli_code:<17} -> {dimension_value}"),
    ("routes", "routes (location -> company/site; no location: the default route):",
     "  {location:<20} -> {company}/{site}"),
)


def cmd_mapping_list(args: argparse.Namespace) -> int:
    from pipeline import db, mapping

    with db.transaction() as cur:
        maps = mapping.listing(cur)
    if args.json:
        print(json.dumps(maps, indent=2))
        return 0
    from ops.tables import safe

    for key, title, line in LISTING:
        print(title)
        for row in maps[key]:
            print(safe(line.format(**row)))
    return 0


def register(sub: Any) -> None:
    mp = sub.add_parser("mapping", help="Stampli codes to X3 accounts, dimensions and "
                        "company/site routes").add_subparsers(dest="map_cmd", required=True)
    mi = mp.add_parser("import", help="load a mapping CSV (gl: stampli_code,x3_account; "
                       "cost-centers: stampli_code,dimension_type,dimension_value)")
    mi.add_argument("kind", choices=["gl", "cost-centers", "dimension", "route"],
                    help="which mapping the file holds")
    mi.add_argument("args", nargs="+", metavar="[TYPE] FILE",
                    help="dimension: TYPE FILE (stampli_code,dimension_value); "
                         "route: FILE (location,company,site)")
    mi.set_defaults(func=cmd_mapping_import)
    ml = mp.add_parser("list", help="show the mappings")
    ml.add_argument("--json", action="store_true", help="JSON instead of text")
    ml.set_defaults(func=cmd_mapping_list)
