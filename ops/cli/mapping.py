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


def cmd_mapping_list(args: argparse.Namespace) -> int:
    from pipeline import db, mapping

    with db.transaction() as cur:
        maps = mapping.listing(cur)
    if args.json:
        print(json.dumps(maps, indent=2))
        return 0
    gl, cc, dims, routes = (maps[k] for k in ("gl", "cost_centers", "dimensions", "routes"))
    from ops.tables import safe

    print("GL accounts (unmapped codes pass through unchanged):")
    for r in gl:
        print(safe(f"  {r['stampli_code']:<20} -> {r['x3_account']}"))
    print("cost centers:")
    for r in cc:
        print(safe(f"  {r['stampli_code']:<20} -> {r['dimension_type']}={r['dimension_value']}"))
    print("other dimensions (unmapped values pass through):")
    for r in dims:
        print(safe(f"  {r['dimension_type']} {r['stampli_code']:<17} -> {r['dimension_value']}"))
    print("routes (location -> company/site; no location: the default route):")
    for r in routes:
        print(safe(f"  {r['location']:<20} -> {r['company']}/{r['site']}"))
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
