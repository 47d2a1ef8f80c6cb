"""Console page times on a large ledger: 100,000 invoices and 1,000,000 audit rows.

The data is generated straight into a fresh database (`mlc_bench_console`) with INSERT ...
SELECT over generate_series (no pipeline run), ANALYZEd, then every page is requested through
the Flask app in this process (logged in as an admin, the whole request: session check, queries,
template) and timed: median and worst of --runs after one warm-up. Target: < 200 ms a page.

    python bench/console.py [--invoices 100000] [--audit 1000000] [--runs 7] [--keep]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg2  # noqa: E402
from cryptography.fernet import Fernet  # noqa: E402

ADMIN_DSN = os.environ.get("MLC_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
DB = "mlc_bench_console"
FILES = 200
TARGET_MS = 200.0

GENERATE = """
INSERT INTO source_files (connection, path, kind, size, mtime, sha256, content, status,
                          rows_total, rows_rejected, invoices_accepted, invoices_rejected,
                          fetched_at, parsed_at)
SELECT 'stampli', '/export/invoices_' || to_char(now() - (f || ' hours')::interval,
       'YYYYMMDDHH24MISS') || '.csv', 'invoices', 100000 + f, f, md5(f::text) || md5('x' || f),
       NULL, CASE WHEN f %% 20 = 0 THEN 'partially_parsed' ELSE 'parsed' END,
       %(per_file)s * 2, CASE WHEN f %% 20 = 0 THEN 10 ELSE 0 END, %(per_file)s,
       CASE WHEN f %% 20 = 0 THEN 5 ELSE 0 END,
       now() - ((%(files)s - f) * 7 || ' hours')::interval,
       now() - ((%(files)s - f) * 7 || ' hours')::interval + interval '1 minute'
FROM generate_series(1, %(files)s) f;

INSERT INTO invoices (stampli_vendor_id, invoice_number, source_file_id, status, attempts,
                      last_error, x3_supplier_code, x3_document_number, payload, payload_sha256,
                      review_reason, created_at, updated_at, posted_at, tries)
SELECT 'v-' || lpad((i %% 500)::text, 5, '0'), 'inv-' || lpad(i::text, 7, '0'),
       1 + (i - 1) / %(per_file)s, s.status,
       CASE WHEN s.status IN ('posted', 'needs_review') THEN 1 ELSE 0 END,
       CASE WHEN s.status = 'failed' THEN 'line 1: GL account ' || (6000 + i %% 7)
            || ' does not exist in X3 chart CONS' END,
       'V' || lpad((i %% 500)::text, 5, '0'),
       CASE WHEN s.status IN ('posted', 'needs_review') THEN 'SIV' || lpad(i::text, 7, '0') END,
       jsonb_build_object('vendor_id', 'V-' || lpad((i %% 500)::text, 5, '0'),
           'vendor_name', 'Vendor ' || (i %% 500),
           'invoice_number', 'INV-' || lpad(i::text, 7, '0'),
           'invoice_date', (current_date - (i %% 60))::text, 'due_date', NULL,
           'posting_date', NULL, 'currency', (ARRAY['USD', 'EUR', 'GBP'])[1 + i %% 3],
           'invoice_total', ((i %% 900) + 100)::text || '.00', 'tax_amount', '0.00',
           'document_type', 'invoice', 'stampli_invoice_id', 'ST-' || i,
           'lines', jsonb_build_array(
               jsonb_build_object('line_number', 1, 'description', 'Goods', 'quantity', '1',
                   'amount', ((i %% 900) + 50)::text || '.00', 'gl_account', '6100',
                   'cost_center', 'CC-' || (i %% 5), 'location', NULL, 'dimensions', '{}'::jsonb),
               jsonb_build_object('line_number', 2, 'description', 'Freight', 'quantity', '1',
                   'amount', '50.00', 'gl_account', (6000 + i %% 7)::text,
                   'cost_center', 'CC-' || (i %% 5), 'location', NULL,
                   'dimensions', '{}'::jsonb))),
       md5(i::text),
       CASE WHEN s.status = 'needs_review' THEN 'changed re-export of an invoice already posted: '
            || 'line 1 amount ''100.00'' -> ''110.00''' END,
       c.at, c.at + interval '5 minutes',
       CASE WHEN s.status = 'posted' THEN c.at + interval '2 minutes' END, 0
FROM generate_series(1, %(invoices)s) i
CROSS JOIN LATERAL (SELECT CASE WHEN i %% 50 = 7 THEN 'failed' WHEN i %% 100 = 3 THEN 'needs_review'
                                WHEN i %% 1000 = 11 THEN 'outcome_unknown'
                                WHEN i > %(invoices)s - 40 THEN 'received'
                                ELSE 'posted' END AS status) s
CROSS JOIN LATERAL (SELECT now() - ((%(invoices)s - i) * (%(files)s * 7 * 3600.0 / %(invoices)s)
                           || ' seconds')::interval AS at) c;

INSERT INTO invoice_lines (invoice_id, line_number, description, quantity, amount, gl_account,
                           cost_center, location)
SELECT id, n, CASE n WHEN 1 THEN 'Goods' ELSE 'Freight' END, 1, 50, '6100', 'CC-1',
       CASE WHEN id %% 3 = 0 THEN 'Plant 2' END
FROM invoices CROSS JOIN generate_series(1, 2) n;

INSERT INTO audit_events (at, stage, outcome, source_file_id, invoice_id, task_id, attempt,
                          detail)
SELECT inv.created_at + (k || ' seconds')::interval,
       (ARRAY['file_parse', 'vendor_lookup', 'gl_validate', 'invoice_post', 'invoice_post',
              'vendor_lookup', 'gl_validate', 'replay', 'invoice_post', 'poll'])[1 + k %% 10],
       CASE WHEN k %% 10 = 2 AND inv.status = 'failed' THEN 'error' ELSE 'ok' END,
       CASE WHEN k %% 10 = 0 THEN inv.source_file_id END,
       CASE WHEN k %% 10 <> 9 THEN inv.id END, md5(inv.id::text || k), 1 + k / 10,
       jsonb_build_object('code', 'V' || inv.id %% 500, 'document_number', 'SIV' || inv.id)
FROM (SELECT id, created_at, source_file_id, status FROM invoices
      ORDER BY id LIMIT %(audit)s / 10) inv
CROSS JOIN generate_series(0, 9) k;

INSERT INTO x3_attempts (started_at, invoice_id, call, try, duration_ms, outcome, http_status)
SELECT created_at, id, 'create_invoice', 1, 12.5, 'ok', 201 FROM invoices;

INSERT INTO parse_rejections (source_file_id, vendor_id, invoice_number, line_numbers, field,
                              reason)
SELECT 1 + (r %% %(files)s), 'V-1', 'BAD-' || r, ARRAY[r %% 1000 + 2], 'invoice_total',
       'totals do not reconcile' FROM generate_series(1, 2000) r;

INSERT INTO polls (started_at, finished_at, outcome, listed, fetched, detail)
SELECT now() - (p || ' minutes')::interval * 15, now() - (p || ' minutes')::interval * 15,
       CASE WHEN p %% 97 = 5 THEN 'error' ELSE 'ok' END, 10, p %% 2,
       CASE WHEN p %% 97 = 5 THEN '{"error": "connection refused", "waiting": []}'::jsonb
            ELSE '{"waiting": []}'::jsonb END
FROM generate_series(0, 9999) p;

INSERT INTO vendor_links SELECT 'v-' || lpad(v::text, 5, '0'), 'V' || lpad(v::text, 5, '0'),
       'created' FROM generate_series(0, 499) v;
INSERT INTO gl_account_map SELECT (6000 + g)::text, (6000 + g)::text FROM generate_series(0, 6) g;
INSERT INTO cost_center_map SELECT 'CC-' || c, 'CCT', 'C' || c FROM generate_series(0, 4) c;
INSERT INTO entity_routes VALUES ('plant 2', 'US02', 'US021');
"""


def build(args: argparse.Namespace) -> str:
    from pipeline import migrate
    from sandbox.harness import fresh_database

    dsn = fresh_database(ADMIN_DSN, DB)
    migrate.upgrade(dsn)
    conn = psycopg2.connect(dsn)
    started = time.monotonic()
    with conn, conn.cursor() as cur:
        cur.execute(GENERATE, {"invoices": args.invoices, "audit": args.audit, "files": FILES,
                               "per_file": -(-args.invoices // FILES)})
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("VACUUM ANALYZE")
        cur.execute("SELECT (SELECT count(*) FROM invoices) AS i,"
                    " (SELECT count(*) FROM audit_events) AS a")
        invoices, audit = cur.fetchone()
    conn.close()
    print(f"generated {invoices:,} invoices and {audit:,} audit rows in "
          f"{time.monotonic() - started:.1f} s", flush=True)
    return dsn


def pages(cur) -> list[tuple[str, str]]:
    cur.execute("SELECT max(id) AS top FROM invoices")
    top = cur.fetchone()["top"]
    cur.execute("SELECT id FROM invoices WHERE status = 'needs_review' ORDER BY id DESC LIMIT 1")
    review = cur.fetchone()["id"]
    cur.execute("SELECT id FROM invoices WHERE status = 'failed' ORDER BY id LIMIT 1")
    failed = cur.fetchone()["id"]
    today = time.strftime("%Y-%m-%d")
    month = today[:8] + "01"
    since30 = time.strftime("%Y-%m-%d", time.localtime(time.time() - 30 * 86400))
    return [
        ("overview", "/"),
        ("overview by company", "/?by=company"),
        ("invoices", "/invoices"),
        ("invoices, deep keyset page", f"/invoices?before={top // 2}"),
        ("invoices failed", "/invoices?status=failed"),
        ("invoices failed, older page", f"/invoices?status=failed&before={top // 3}"),
        ("invoices by vendor", "/invoices?vendor=V-00042"),
        ("invoices number prefix", "/invoices?number=INV-00123"),
        ("invoices by company", "/invoices?company=US01"),
        ("invoices routed company", "/invoices?company=US02"),
        ("invoices company (no match)", "/invoices?company=XX99"),
        ("invoices date range", f"/invoices?since={today}&until={today}"),
        ("invoice detail (failed)", f"/invoices/{failed}"),
        ("invoice detail (review diff)", f"/invoices/{review}"),
        ("review queue", "/review"),
        ("files", "/files"),
        ("file detail", "/files/100"),
        ("mappings", "/mappings"),
        ("users", "/users"),
        ("activity", "/activity"),
        ("month-end CSV, this month", f"/report.csv?since={month}"),
        ("month-end CSV, 30 days", f"/report.csv?since={since30}"),
    ]


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--invoices", type=int, default=100_000)
    p.add_argument("--audit", type=int, default=1_000_000)
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--keep", action="store_true", help="keep the database")
    p.add_argument("--reuse", action="store_true", help="time the database of a --keep run")
    args = p.parse_args()
    dsn = ADMIN_DSN.rsplit("/", 1)[0] + f"/{DB}" if args.reuse else build(args)
    os.environ.update(DATABASE_URL=dsn, MLC_SECRET_KEYS=Fernet.generate_key().decode(),
                      CELERY_BROKER_URL=os.environ.get("MLC_BENCH_BROKER",
                                                       "redis://127.0.0.1:6379/15"))
    from console import create_app, users
    from pipeline import db

    with db.transaction() as cur:
        cur.execute("DELETE FROM console_users WHERE name = 'bench'")
        users.add(cur, "bench", "admin", "bench password", by="bench")
        todo = pages(cur)
    client = create_app({"TESTING": True}).test_client()
    login = client.get("/login").get_data(as_text=True)
    token = login.split('name="csrf_token" value="')[1].split('"')[0]
    r = client.post("/login", data={"name": "bench", "password": "bench password",
                                    "csrf_token": token})
    assert r.status_code == 302, r.status_code
    print(f"{'page':<32}{'median ms':>10}{'worst ms':>10}{'KB':>8}")
    slow = []
    for name, path in todo:
        times = []
        for i in range(args.runs + 1):
            t0 = time.perf_counter()
            r = client.get(path)
            elapsed = (time.perf_counter() - t0) * 1000
            assert r.status_code == 200, (path, r.status_code)
            if i:
                times.append(elapsed)
        median = statistics.median(times)
        print(f"{name:<32}{median:>10.1f}{max(times):>10.1f}{len(r.data) / 1024:>8.0f}",
              flush=True)
        if median >= TARGET_MS and not path.startswith("/report.csv"):
            slow.append(name)
    db.close_pools()
    if not args.keep and not args.reuse:
        from sandbox.harness import fresh_database

        fresh_database(ADMIN_DSN, DB)  # leaves an empty database behind, not 1 GB
        conn = psycopg2.connect(ADMIN_DSN)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.close()
    # The CSV is a download, not a page: ops.reports.reconciliation builds it in Python.
    print("every page under 200 ms (the CSV download is not a page)" if not slow
          else f"pages over 200 ms: {', '.join(slow)}")
    return 0 if not slow else 1


if __name__ == "__main__":
    sys.exit(main())
