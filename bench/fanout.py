"""One big export file through the parse task: time and the parse task's peak RSS.

    python bench/fanout.py -n 100000 -l 2 -v 200

Generates one export (a vendor file and one invoice file of N invoices of L lines), fetches it
over the real SFTP server, then runs the `mlc.parse_file` task body (parse, store, X3 code
prefetch, one `mlc.process_invoices` message per MLC_INVOICES_PER_TASK invoices into a
private Redis) for each file in a child process, the way a worker child runs it. Prints the
time per file and the child's peak RSS (VmHWM) beside that of the same child before the first
file (interpreter and imports).
Target (issue 16): a 100,000-invoice file parsed and fanned out with peak RSS < 200 MB.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import stack as st  # noqa: E402
from sandbox.generate import generate  # noqa: E402

_CHILD = """
import json, time
from pipeline import db
from pipeline.audit import TaskContext
from pipeline.stampli import poll
from tasks.parse import parse_file


def peak():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))


ctx = TaskContext(task_id="bench-fanout", attempt=1)
ids = poll.poll(ctx).new_file_ids
out = {"before": peak(), "files": []}
for file_id in ids:
    start = time.perf_counter()
    result = parse_file.apply(args=(file_id,)).get()
    out["files"].append({"file_id": file_id, "seconds": time.perf_counter() - start,
                         "invoices": result["invoices"], "status": result["status"],
                         "peak": peak()})
print(json.dumps(out))
"""


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--invoices", "-n", type=int, default=100_000)
    p.add_argument("--lines", "-l", type=int, default=2)
    p.add_argument("--vendors", "-v", type=int, default=200)
    p.add_argument("--keep", action="store_true", help="keep the database and work dir")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = _args(argv)
    stack = None
    try:
        stack = st.build("mlc_bench_fanout", concurrency=1)
        generate(stack.export_dir, invoices=a.invoices, lines=a.lines, vendors=a.vendors,
                 prefix="F")
        st.mark_done(stack.export_dir)
        size = sum(p.stat().st_size for p in stack.export_dir.glob("invoices_*.csv"))
        start = time.perf_counter()
        run = subprocess.run([sys.executable, "-c", _CHILD], env=stack.env, cwd=ROOT,
                             capture_output=True, text=True, timeout=3600)
        if run.returncode:
            print(run.stderr[-3000:], file=sys.stderr)
            return 1
        out = json.loads(run.stdout.strip().splitlines()[-1])
        import redis

        queued = redis.Redis.from_url(stack.env["CELERY_BROKER_URL"]).llen("celery")
        print(f"\n== one export: N={a.invoices} invoices of {a.lines} lines, V={a.vendors}"
              f" (invoice file {size / 1e6:.1f} MB)")
        print(f"child before the first file (interpreter, imports): peak RSS"
              f" {out['before'] / 2**20:.0f} MB")
        for f in out["files"]:
            print(f"file {f['file_id']}: {f['status']}, {f['invoices']} invoices fanned out in"
                  f" {f['seconds']:.1f} s; peak RSS so far {f['peak'] / 2**20:.0f} MB")
        print(f"messages queued for the workers: {queued}; total"
              f" {time.perf_counter() - start:.1f} s")
        big = max(out["files"], key=lambda f: f["invoices"])
        return 0 if big["invoices"] == a.invoices and big["peak"] < 200 * 2**20 else 1
    finally:
        st.cleanup(stack, a.keep)


if __name__ == "__main__":
    sys.exit(main())
