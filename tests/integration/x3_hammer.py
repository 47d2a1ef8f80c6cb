"""One worker process of the multi-process X3 tests (not a test module itself).

    PYTHONPATH=. python tests/integration/x3_hammer.py CALLS

Makes CALLS account checks through the stored `x3` connection, the way a Celery worker does
(shared_client: Postgres token store, Redis call cap), and prints {"ok": n, "errors": [...]}.
"""

import json
import sys


def main() -> None:
    from pipeline.x3.connect import shared_client
    from pipeline.x3.errors import X3Error

    calls = int(sys.argv[1])
    client = shared_client()
    ok, errors = 0, []
    for _ in range(calls):
        try:
            ok += bool(client.account_exists("CONS", "6100"))
        except X3Error as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
    print(json.dumps({"ok": ok, "errors": errors}))


if __name__ == "__main__":
    main()
