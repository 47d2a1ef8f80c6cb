"""mlc sandbox and mlc demo: the local simulators, and the whole pipeline on the sample export."""

from __future__ import annotations

import argparse
from typing import Any


def cmd_sandbox_x3(args: argparse.Namespace) -> int:
    from sandbox import x3sim

    argv = ["--host", args.host, "--port", str(args.port)]
    if args.seed:
        argv += ["--seed", args.seed]
    return x3sim.main(argv)


def cmd_sandbox_sftp(args: argparse.Namespace) -> int:
    import signal
    import threading

    from sandbox.sftp import LocalSftp

    server = LocalSftp(args.dir, host=args.host, port=args.port, state_dir=args.state_dir)
    with server:
        print(f"SFTP export {server.export_dir} on {server.host}:{server.port}", flush=True)
        print(f"pinned host key: {server.host_key_line}", flush=True)
        print(f"client key: {server.client_key_path}", flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from sandbox import demo

    return demo.main(keep=args.keep, console=args.console)


def register(sub: Any) -> None:
    sb = sub.add_parser("sandbox", help="local simulators").add_subparsers(
        dest="sb_cmd", required=True)
    x3 = sb.add_parser("x3", help="run the X3 simulator")
    x3.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    x3.add_argument("--port", type=int, default=8124, help="port to listen on (8124)")
    x3.add_argument("--seed", metavar="FILE.json",
                    help="master data: suppliers, accounts, dimensions (default: demo seed)")
    x3.set_defaults(func=cmd_sandbox_x3)
    sf = sb.add_parser("sftp", help="run a local SFTP export (OpenSSH sshd)")
    sf.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    sf.add_argument("--port", type=int, default=2222, help="port to listen on (2222)")
    sf.add_argument("--dir", required=True, help="the export directory to serve")
    sf.add_argument("--state-dir", help="where sshd keeps its keys and config; keep it across "
                    "restarts so the pinned host key stays the same (default: a temporary dir)")
    sf.set_defaults(func=cmd_sandbox_sftp)

    demo = sub.add_parser("demo", help="run the whole pipeline on the sample export")
    demo.add_argument("--keep", action="store_true",
                      help="keep the work directory (logs of the simulator, worker and beat, "
                           "the SFTP export, sshd state) instead of removing it; the database "
                           "mlc_demo is always left for inspection (the next demo recreates it)")
    demo.add_argument("--console", action="store_true",
                      help="leave the stack and the web console running until Ctrl-C")
    demo.set_defaults(func=cmd_demo)
