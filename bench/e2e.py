"""End-to-end throughput: N invoices of L lines over V vendors, from the first poll to the last
invoice settled, through real sshd, Redis, Postgres, W Celery worker processes and the X3
simulator with X ms latency; then the same files through a naive one-process baseline.

    python bench/e2e.py -n 2000 -l 5 -v 200 --latency 0 --workers 1 --concurrency 4
    python bench/e2e.py -n 2000 -l 5 -v 200 --latency 200 --cap 8 --workers 2 --concurrency 6

It prints the X3 calls made beside the necessary ones (a create per invoice, a look-up and a
create per new vendor), the share of C x run time the simulator's sessions were busy, the
necessary-call bound (N + 2 V_new) X / C, and Postgres transactions per invoice.

The X3 call cap C is the client's own (MLC_X3_MAX_CONCURRENCY, a Redis lease per call across
all workers); the simulator's `max_concurrency` fault is set to C too and answers 503 to any
call beyond it, so `busy 503s` must print 0.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import baseline  # noqa: E402
from bench import stack as st  # noqa: E402
from sandbox.generate import compare_with_x3, generate  # noqa: E402


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--invoices", "-n", type=int, default=2000)
    p.add_argument("--lines", "-l", type=int, default=5)
    p.add_argument("--vendors", "-v", type=int, default=200)
    p.add_argument("--latency", "-x", type=int, default=0, help="X3 latency, ms")
    p.add_argument("--cap", "-c", type=int, default=0,
                   help="X3 concurrency cap C (default W * concurrency)")
    p.add_argument("--workers", "-w", type=int, default=2, help="worker processes W")
    p.add_argument("--concurrency", type=int, default=2, help="pool processes per worker")
    p.add_argument("--no-events", action="store_true",
                   help="Celery task events off (MLC_TASK_EVENTS=false): what they cost")
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument("--baseline-limit", type=int, default=0,
                   help="baseline on the first K invoices only, scaled to N (0: all)")
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--keep", action="store_true", help="keep the database and work dir")
    return p.parse_args(argv)


def _latencies() -> tuple[list[float], float, float]:
    """Per-invoice seconds created_at -> posted_at, and first created / last posted (epoch)."""
    from pipeline import db

    with db.transaction() as cur:
        cur.execute("SELECT extract(epoch FROM posted_at - created_at)::float AS s FROM invoices"
                    " WHERE posted_at IS NOT NULL ORDER BY 1")
        lat = [r["s"] for r in cur.fetchall()]
        cur.execute("SELECT extract(epoch FROM min(created_at))::float AS a,"
                    " extract(epoch FROM max(coalesce(posted_at, updated_at)))::float AS b"
                    " FROM invoices")
        r = cur.fetchone()
    return lat, r["a"], r["b"]


def _pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else 0.0


def main(argv: list[str] | None = None) -> int:
    a = _args(argv)
    cap = a.cap or a.workers * a.concurrency
    if a.workers * a.concurrency < cap:
        print(f"note: W*concurrency = {a.workers * a.concurrency} is below the cap {cap}")
    stack = None
    try:
        # The real cap (a Redis lease per X3 call across all workers) is C; worker slots may
        # exceed it, so database and Celery work overlap the X3 calls.
        env = {"MLC_X3_MAX_CONCURRENCY": str(cap)}
        if a.no_events:
            env["MLC_TASK_EVENTS"] = "false"
        stack = st.build("mlc_bench_e2e", concurrency=a.concurrency, extra_env=env)
        for _ in range(a.workers):
            stack.start_worker()
        expected = generate(stack.export_dir, invoices=a.invoices, lines=a.lines,
                            vendors=a.vendors, prefix="B")
        st.mark_done(stack.export_dir)
        stack.faults(latency_ms=a.latency, max_concurrency=cap)
        cpu0, sim0, pg0, redis0 = (stack.worker_cpu(), st.group_cpu(stack.sim.proc.pid),
                                   st.postgres_cpu(), st.group_cpu(stack.redis.pid))
        xacts0 = st.pg_transactions(stack.db_name)
        t0 = time.time()
        stack.poll()
        s = st.wait_settled(a.invoices, timeout=a.timeout)
        lat, _, t_end = _latencies()
        worker_cpu = stack.worker_cpu() - cpu0
        sim_cpu = st.group_cpu(stack.sim.proc.pid) - sim0
        pg_cpu, redis_cpu = st.postgres_cpu() - pg0, st.group_cpu(stack.redis.pid) - redis0
        elapsed = t_end - t0
        stack.stop_workers()  # their backends report transaction counts as they exit
        xacts = st.pg_transactions(stack.db_name) - xacts0
        state = stack.sim_state()
        diff = compare_with_x3(state, expected)
        n = a.invoices
        print(f"\n== pipeline: N={n} L={a.lines} V={a.vendors} X={a.latency}ms C={cap}"
              f" (W={a.workers} x concurrency {a.concurrency})")
        print(f"invoices: {s['invoices']}  vendors created: {s['vendors_created']}")
        print(f"X3 check: posted {diff['posted']}/{n}, missing {len(diff['missing'])},"
              f" duplicated {len(diff['duplicated'])}, wrong {len(diff['wrong'])},"
              f" duplicated suppliers {len(diff['duplicated_suppliers'])}")
        stats, made = state["stats"], state["stats"]["requests"]
        necessary = n + 2 * s["vendors_created"]
        print(f"X3 calls: {made} (necessary: N + 2 per new vendor = {necessary}; by kind"
              f" {dict(sorted(stats['calls'].items()))})  max in flight:"
              f" {stats['max_in_flight']}  busy 503s: {stats['faults'].get('busy', 0)}")
        print(f"time first poll -> last settled: {elapsed:.2f} s")
        print(f"throughput: {n / elapsed:.1f} invoices/s")
        if lat:
            print(f"latency created_at -> posted_at: p50 {_pct(lat, .5):.2f} s,"
                  f" p95 {_pct(lat, .95):.2f} s, max {lat[-1]:.2f} s")
        print(f"CPU per invoice: workers {1000 * worker_cpu / n:.2f} ms"
              f" ({worker_cpu:.1f} s); simulator {1000 * sim_cpu / n:.2f} ms;"
              f" postgres (all backends) {1000 * pg_cpu / n:.2f} ms; redis"
              f" {1000 * redis_cpu / n:.2f} ms")
        print(f"Postgres transactions: {xacts} ({xacts / n:.2f} per invoice, the bench's own"
              " progress probes included)")
        print(f"X3 sessions busy: {stats['busy_seconds']:.1f} s of C x run time"
              f" {cap * elapsed:.1f} s = {100 * stats['busy_seconds'] / (cap * elapsed):.0f}%")
        if a.latency:
            bound = n * a.latency / 1000 / cap
            need = necessary * a.latency / 1000 / cap
            print(f"necessary-call bound (N + 2*V_new)*X/C = {need:.1f} s; measured / bound ="
                  f" {elapsed / need:.2f}  (N*X/C = {bound:.1f} s: {elapsed / bound:.2f})")
        if not a.no_baseline:
            stack.reset_sim()
            stack.faults(latency_ms=a.latency)
            b = baseline.run(stack.url, stack.export_dir, st.CC_MAP, limit=a.baseline_limit or None)
            # A sequential loop scales linearly: suppliers by vendors, invoices by invoices.
            scale = n / b["invoices"]
            b_time = (b["supplier_seconds"] * b["all_suppliers"] / max(1, b["suppliers"])
                      + (b["seconds"] - b["supplier_seconds"]) * scale)
            bdiff = compare_with_x3(stack.sim_state(), expected[: b["invoices"]])
            print(f"\n== baseline (csv + requests, one process, no queue/db/dedup):"
                  f" {b['invoices']} invoices + {b['suppliers']} suppliers in"
                  f" {b['seconds']:.2f} s"
                  + (f"; extrapolated to N: {b_time:.1f} s" if scale != 1 else ""))
            print(f"baseline: {n / b_time:.1f} invoices/s,"
                  f" CPU {1000 * b['cpu'] / b['invoices']:.2f} ms/invoice;"
                  f" posted {bdiff['posted']}, missing {len(bdiff['missing'])}")
            print(f"pipeline time / baseline time = {elapsed / b_time:.2f}")
        ok = not (diff["missing"] or diff["duplicated"] or diff["wrong"])
        return 0 if ok else 1
    finally:
        st.cleanup(stack, a.keep)


if __name__ == "__main__":
    sys.exit(main())
