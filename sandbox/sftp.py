"""A real SFTP export for tests and the demo: OpenSSH's sshd on loopback, keys generated here.

Its host key is handed to the connector as the pinned key: nothing is auto-accepted.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


class SandboxError(RuntimeError):
    pass


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _keygen(path: Path, key_type: str = "ed25519", passphrase: str = "") -> None:
    args = ["ssh-keygen", "-q", "-t", key_type, "-N", passphrase, "-f", str(path), "-C", "mlc"]
    if key_type == "rsa":
        args[4:4] = ["-b", "2048"]
    subprocess.run(args, check=True, capture_output=True)


def ensure_password_user(user: str, password: str) -> None:
    """A local account for password logins (tests only; root creates it on this machine)."""
    if os.geteuid() != 0:
        raise SandboxError("password logins need a local account: run as root")
    if subprocess.run(["id", user], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/sh", user], check=True,
                       capture_output=True)
    subprocess.run(["chpasswd"], input=f"{user}:{password}".encode(), check=True,
                   capture_output=True)


class LocalSftp:
    """sshd serving `export_dir` over SFTP, with a fresh host key and client key."""

    def __init__(self, export_dir: str | Path, *, host: str = "127.0.0.1", port: int = 0,
                 state_dir: str | Path | None = None, password_user: tuple[str, str] | None = None,
                 extra_public_keys: tuple[str, ...] = ()) -> None:
        self.export_dir = Path(export_dir).resolve()
        self.host = host
        self.port = port or free_port(host)
        self.state_dir = Path(state_dir or tempfile.mkdtemp(prefix="mlc-sshd-"))
        self.username = getpass.getuser()
        # (user, password): a local account sshd checks with its password (needs root to create).
        self.password_user = password_user
        self.extra_public_keys = extra_public_keys
        self._proc: subprocess.Popen[bytes] | None = None

    # -- keys ---------------------------------------------------------------------------------
    @property
    def host_key_path(self) -> Path:
        return self.state_dir / "ssh_host_ed25519_key"

    @property
    def client_key_path(self) -> Path:
        return self.state_dir / "client_ed25519"

    @property
    def host_key_line(self) -> str:
        """The pinned key, as `ssh-ed25519 AAAA...`."""
        return " ".join(Path(f"{self.host_key_path}.pub").read_text().split()[:2])

    @property
    def client_key_pem(self) -> str:
        return self.client_key_path.read_text()

    def _prepare(self) -> Path:
        if not Path(SSHD).exists():
            raise SandboxError("OpenSSH server not found: install Debian package openssh-server")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.export_dir.mkdir(parents=True, exist_ok=True)
        if not self.host_key_path.exists():
            _keygen(self.host_key_path)
        if not self.client_key_path.exists():
            _keygen(self.client_key_path)
        authorized = self.state_dir / "authorized_keys"
        authorized.write_text("".join(
            [Path(f"{self.client_key_path}.pub").read_text()]
            + [k.rstrip("\n") + "\n" for k in self.extra_public_keys]))
        if self.password_user:
            ensure_password_user(*self.password_user)
            os.chmod(self.export_dir, 0o777)  # noqa: S103 - test account reads and moves files
        os.chmod(authorized, 0o600)
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        config = self.state_dir / "sshd_config"
        config.write_text("\n".join([
            f"Port {self.port}",
            f"ListenAddress {self.host}",
            f"HostKey {self.host_key_path}",
            f"AuthorizedKeysFile {authorized}",
            f"PidFile {self.state_dir / 'sshd.pid'}",
            "StrictModes no",
            "UsePAM no",
            "PermitRootLogin yes",
            f"PasswordAuthentication {'yes' if self.password_user else 'no'}",
            "KbdInteractiveAuthentication no",
            "Subsystem sftp internal-sftp",
            "LogLevel ERROR",
            "",
        ]))
        return config

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self, timeout: float = 15.0) -> LocalSftp:
        config = self._prepare()
        log = open(self.state_dir / "sshd.log", "ab")  # noqa: SIM115 - lives as long as sshd
        self._proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)],
                                      stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise SandboxError(f"sshd exited: {(self.state_dir / 'sshd.log').read_text()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as s:
                    if s.recv(4).startswith(b"SSH-"):
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise SandboxError(f"sshd did not answer on {self.host}:{self.port} within {timeout}s")

    def stop(self) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def __enter__(self) -> LocalSftp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def connection_settings(self) -> dict[str, object]:
        return {"host": self.host, "port": self.port, "username": self.username,
                "remote_dir": str(self.export_dir), "host_key": self.host_key_line}
