"""SFTP access to the Stampli export directory: pinned host keys, listing, streamed download."""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import io
import posixpath
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

import paramiko

from pipeline.connections import Connection

CHUNK = 256 * 1024


class SftpError(Exception):
    """The export directory cannot be reached or read."""

    transient = False


class SftpUnreachable(SftpError):
    """Network trouble: the next attempt may well succeed."""

    transient = True


class HostKeyRefused(SftpError):
    """The server's host key is unknown or changed: we refuse to talk to it."""


class FileTooLarge(SftpError):
    pass


@dataclass(frozen=True)
class RemoteFile:
    path: str
    name: str
    size: int
    mtime: int


def _pinned_key(entry: str) -> paramiko.PKey:
    parts = entry.split()
    if len(parts) >= 3 and not parts[0].startswith(("ssh-", "ecdsa-")):
        parts = parts[1:]  # a known_hosts line: "host keytype base64"
    if len(parts) < 2:
        raise HostKeyRefused("pinned host key must look like 'ssh-ed25519 AAAA...'")
    return paramiko.PKey.from_type_string(parts[0], base64.b64decode(parts[1]))


def _private_key(pem: str, passphrase: str | None) -> paramiko.PKey:
    errors = []
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key(io.StringIO(pem), password=passphrase)
        except paramiko.PasswordRequiredException:
            raise SftpError("the private key needs a passphrase (--key-passphrase-stdin)") from None
        except (paramiko.SSHException, ValueError) as exc:
            errors.append(type(exc).__name__)
    raise SftpError("the private key is not a readable RSA, ECDSA or Ed25519 key")


def host_label(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


@contextmanager
def open_sftp(conn: Connection, *, timeout: float = 20.0) -> Iterator[paramiko.SFTPClient]:
    """An SFTP session whose server proved it holds the pinned host key."""
    s = conn.settings
    host, port = s["host"], int(s.get("port", 22))
    client = paramiko.SSHClient()
    # Unknown keys are refused, never learned: the pinned key is the only trusted one.
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    pinned = _pinned_key(s["host_key"])
    client.get_host_keys().add(host_label(host, port), pinned.get_name(), pinned)
    kwargs: dict[str, Any] = {
        "hostname": host, "port": port, "username": s["username"], "timeout": timeout,
        "banner_timeout": timeout, "auth_timeout": timeout, "allow_agent": False,
        "look_for_keys": False,
    }
    if conn.secret.get("private_key"):
        kwargs["pkey"] = _private_key(conn.secret["private_key"], conn.secret.get("passphrase"))
    elif conn.secret.get("password"):
        kwargs["password"] = conn.secret["password"]
    try:
        client.connect(**kwargs)
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise HostKeyRefused(
            f"host key of {host_label(host, port)} changed: got {exc.key.get_name()} "
            f"{exc.key.fingerprint}, pinned {pinned.fingerprint}; refusing to connect"
        ) from None
    except paramiko.AuthenticationException:
        client.close()
        raise SftpError(f"authentication as {s['username']!r} refused by "
                        f"{host_label(host, port)}") from None
    except paramiko.SSHException as exc:
        client.close()
        if "not found in known_hosts" in str(exc):
            raise HostKeyRefused(f"host key of {host_label(host, port)} is not the pinned key; "
                                 "refusing to connect") from None
        raise SftpUnreachable(f"SSH to {host_label(host, port)} failed: {exc}") from None
    except OSError as exc:
        client.close()
        reason = exc.strerror or exc
        raise SftpUnreachable(f"cannot reach {host_label(host, port)}: {reason}") from None
    try:
        sftp = client.open_sftp()
        sftp.get_channel().settimeout(timeout)
        yield sftp
    finally:
        client.close()


def unsafe_name(name: str) -> str | None:
    """Why a remote file name must not be taken, or None. The server names the files: a name is
    joined to paths, moved, stored and printed, so it must be one plain, printable segment."""
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:  # undecodable bytes, kept as surrogates by the listing
        return "not valid UTF-8"
    if "/" in name or "\\" in name:
        return "holds a path separator ('/' or '\\')"
    if ".." in name:
        return "holds '..'"
    if not name.isprintable():
        return "holds a control or invisible character"
    if size > 255:
        return f"longer than 255 bytes ({size})"
    return None


def shown_name(name: str) -> str:
    """A refused name as it can be stored and printed: escapes instead of controls."""
    shown = name.encode("unicode_escape", "backslashreplace").decode("ascii")
    return shown if len(shown) <= 300 else shown[:300] + "..."


def listdir_attr(sftp: paramiko.SFTPClient, directory: str) -> list[paramiko.SFTPAttributes]:
    """Like `SFTPClient.listdir_attr`, but a name that is not UTF-8 does not break the whole
    listing (paramiko decodes strictly): such names come back with surrogate escapes."""
    try:
        return sftp.listdir_attr(directory)
    except UnicodeDecodeError:
        return _listdir_attr_raw(sftp, directory)


def _listdir_attr_raw(sftp: paramiko.SFTPClient, directory: str
                      ) -> list[paramiko.SFTPAttributes]:
    # paramiko's own loop (SFTPClient.listdir_attr), decoding names with surrogateescape.
    from paramiko.sftp import CMD_CLOSE, CMD_HANDLE, CMD_NAME, CMD_OPENDIR, CMD_READDIR

    path = sftp._adjust_cwd(directory)
    kind, msg = sftp._request(CMD_OPENDIR, path)
    if kind != CMD_HANDLE:
        raise paramiko.SFTPError("Expected handle")
    handle = msg.get_binary()
    found = []
    try:
        while True:
            try:
                kind, msg = sftp._request(CMD_READDIR, handle)
            except EOFError:
                break
            if kind != CMD_NAME:
                raise paramiko.SFTPError("Expected name response")
            for _ in range(msg.get_int()):
                name = msg.get_string().decode("utf-8", "surrogateescape")
                longname = msg.get_string().decode("utf-8", "surrogateescape")
                attr = paramiko.SFTPAttributes._from_msg(msg, name, longname)
                if name not in (".", ".."):
                    found.append(attr)
    finally:
        sftp._request(CMD_CLOSE, handle)
    return found


def list_files(sftp: paramiko.SFTPClient, directory: str, patterns: tuple[str, ...],
               refused: list[tuple[str, str]] | None = None) -> list[RemoteFile]:
    """Regular files matching `patterns`; matching names that are unsafe (`unsafe_name`) are
    left out, and listed in `refused` as (name, reason) when given."""
    found = []
    for attr in listdir_attr(sftp, directory):
        if attr.st_mode is not None and not stat.S_ISREG(attr.st_mode):
            continue
        if any(fnmatch.fnmatchcase(attr.filename, p) for p in patterns):
            reason = unsafe_name(attr.filename)
            if reason is not None:
                if refused is not None:
                    refused.append((attr.filename, reason))
                continue
            found.append(RemoteFile(posixpath.join(directory, attr.filename), attr.filename,
                                    int(attr.st_size or 0), int(attr.st_mtime or 0)))
    return sorted(found, key=lambda f: f.name)


def names_in(sftp: paramiko.SFTPClient, directory: str) -> set[str]:
    return {attr.filename for attr in listdir_attr(sftp, directory)}


def download(sftp: paramiko.SFTPClient, path: str, dest: IO[bytes], max_bytes: int) -> str:
    """Stream path into dest, hashing as it goes; refuse past max_bytes. Returns sha256 hex."""
    digest = hashlib.sha256()
    total = 0
    with sftp.open(path, "rb") as remote:
        remote.prefetch()
        while chunk := remote.read(CHUNK):
            total += len(chunk)
            if total > max_bytes:
                raise FileTooLarge(f"{path} is larger than the {max_bytes // (1024 * 1024)} MB cap")
            digest.update(chunk)
            dest.write(chunk)
    return digest.hexdigest()


def move_to(sftp: paramiko.SFTPClient, path: str, target_dir: str) -> str:
    """Move a remote file into target_dir (processed/ or failed/); returns the new path."""
    name = posixpath.basename(path)
    try:
        sftp.stat(target_dir)
    except FileNotFoundError:
        sftp.mkdir(target_dir)
    target = posixpath.join(target_dir, name)
    sftp.posix_rename(path, target)
    return target
