"""``sftp://`` inputs through paramiko, with the server's host key checked before any credential is sent.

The host key must match ``input.sftp.host_key_fingerprint`` (``SHA256:...`` as ``ssh-keygen -lf``
prints it) or an entry of ``known_hosts`` (``input.sftp.known_hosts``, default
``~/.ssh/known_hosts``; ``[host]:port`` for a port other than 22). An unknown or changed key
stops the run naming the key's fingerprint: it is never accepted blindly. Login is by password
or private key (``input.sftp``; the user from the URL or ``username``). A path is a file, a
glob or a folder, as on local disk. Reads are plain SFTP reads, with no prefetch (paramiko's
prefetch would hold the whole file in memory when rows are read slower than it arrives).
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import io
import os
import socket
import stat
from typing import Any
from urllib.parse import unquote, urlsplit

import paramiko
import pyarrow as pa

from connector.config.storage import SftpStorage
from connector.errors import InputError
from connector.rows.source_file import SourceFile, has_pattern, readable_kind
from connector.secrets import remember


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint of a host key (``SHA256:`` and unpadded base64)."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


def _private_key(text: str, passphrase: str | None) -> paramiko.PKey:
    for kind in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return kind.from_private_key(io.StringIO(text), passphrase)
        except paramiko.PasswordRequiredException:
            raise InputError("input.sftp.private_key is encrypted: set input.sftp.private_key_passphrase") from None
        except (paramiko.SSHException, ValueError):
            continue
    raise InputError("input.sftp.private_key: not an OpenSSH or PEM private key (Ed25519, ECDSA or RSA), or the "
                     "passphrase is wrong")


class _Server:
    """One SSH connection to one host, its key checked, logged in; files opened over SFTP."""

    def __init__(self, url: str, settings: SftpStorage) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "", parts.port or 22
        self.where = f"sftp://{self.host}:{self.port}"
        self.user = settings.username or unquote(parts.username or "") or os.environ.get("USER", "")
        self.path = unquote(parts.path) or "/"
        if parts.password:
            remember(unquote(parts.password))
        self._settings = settings
        self._password = unquote(parts.password) if parts.password else None
        self.sftp = self._connect()

    def _connect(self) -> paramiko.SFTPClient:
        timeout = self._settings.timeout_seconds
        try:
            sock = socket.create_connection((self.host, self.port), timeout=timeout)
        except OSError as exc:
            raise InputError(f"input.path: cannot connect to {self.where} ({exc.strerror or exc}); check the "
                             "host and port") from None
        transport = paramiko.Transport(sock)
        try:
            transport.start_client(timeout=timeout)
            self._check_host_key(transport.get_remote_server_key())
            self._login(transport)
            return paramiko.SFTPClient.from_transport(transport)
        except paramiko.SSHException as exc:
            transport.close()
            raise InputError(f"input.path: the SSH handshake with {self.where} failed ({exc}); is it an SSH "
                             "server?") from None
        except BaseException:
            transport.close()
            raise

    def _check_host_key(self, key: paramiko.PKey) -> None:
        seen = fingerprint(key)
        wanted = self._settings.host_key_fingerprint
        if wanted is not None:
            if wanted.rstrip("=") != seen:
                raise InputError(f"input.sftp.host_key_fingerprint: {self.where} presented host key {seen}, not "
                                 f"{wanted}; if the server's key really changed, confirm it with its admin and "
                                 "update the fingerprint")
            return
        path = os.path.expanduser(self._settings.known_hosts or "~/.ssh/known_hosts")
        known = paramiko.HostKeys()
        try:
            known.load(path)
        except OSError:
            raise InputError(f"input.sftp: cannot read known_hosts file '{path}', and no host_key_fingerprint is "
                             f"set; {self.where} presented host key {seen}: confirm it with the server's admin, "
                             "then set input.sftp.host_key_fingerprint to it") from None
        name = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
        entry = known.lookup(name)
        if entry is None or key.get_name() not in entry:
            raise InputError(f"input.sftp: {self.where} is not in {path} (its host key is {seen}); confirm the key "
                             "with the server's admin, then add it there or set input.sftp.host_key_fingerprint")
        if entry[key.get_name()] != key:
            raise InputError(f"input.sftp: the host key of {self.where} ({seen}) differs from the one in {path}; "
                             "someone may be in between: confirm the new key with the server's admin")

    def _login(self, transport: paramiko.Transport) -> None:
        settings = self._settings
        password = settings.password.get_secret_value() if settings.password else self._password
        try:
            if settings.private_key is not None:
                phrase = settings.private_key_passphrase
                key = _private_key(settings.private_key.get_secret_value(),
                                   phrase.get_secret_value() if phrase else None)
                transport.auth_publickey(self.user, key)
            elif password is not None:
                transport.auth_password(self.user, password)
            else:
                raise InputError("input.sftp: give a password or a private_key to log in to " + self.where)
        except paramiko.AuthenticationException:
            raise InputError(f"input.path: {self.where} refused the login of user '{self.user}' (authentication "
                             "failed); check input.sftp's username, password or private_key") from None

    def error(self, path: str, exc: OSError) -> InputError:
        if isinstance(exc, FileNotFoundError) or getattr(exc, "errno", None) == 2:
            return InputError(f"input.path: {self.where}{path} does not exist; check the path")
        if isinstance(exc, PermissionError) or getattr(exc, "errno", None) == 13:
            return InputError(f"input.path: {self.where}{path}: permission denied for user '{self.user}'")
        return InputError(f"input.path: cannot read {self.where}{path}: {exc}")

    def walk(self, folder: str) -> list[tuple[str, paramiko.SFTPAttributes]]:
        found = []
        try:
            entries = self.sftp.listdir_attr(folder)
        except OSError as exc:
            raise self.error(folder, exc) from None
        for entry in entries:
            path = f"{folder.rstrip('/')}/{entry.filename}"
            if stat.S_ISDIR(entry.st_mode or 0):
                found += self.walk(path)
            elif stat.S_ISREG(entry.st_mode or 0):
                found.append((path, entry))
        return found

    def source(self, path: str, attrs: paramiko.SFTPAttributes) -> SourceFile:
        def opened() -> Any:
            return pa.PythonFile(self.sftp.open(path, "rb"), mode="r")

        mtime_ns = None if attrs.st_mtime is None else int(attrs.st_mtime) * 1_000_000_000
        return SourceFile(name=f"{self.where}{path}", size=attrs.st_size, mtime_ns=mtime_ns, stream=opened,
                          seekable=opened)


def sftp_files(url: str, settings: SftpStorage | None) -> list[SourceFile]:
    """The files an ``sftp://`` path names, in path order."""
    server = _Server(url, settings or SftpStorage())
    path = server.path
    if has_pattern(path):
        folder = path[: min(path.find(c) for c in "*?[" if c in path)].rsplit("/", 1)[0] or "/"
        found = [(p, a) for p, a in server.walk(folder) if fnmatch.fnmatchcase(p, path)]
        if not found:
            raise InputError(f"input.path: no file matches '{server.where}{path}'; check the pattern")
        return [server.source(p, a) for p, a in sorted(found, key=lambda pa_: pa_[0])]
    try:
        attrs = server.sftp.stat(path)
    except OSError as exc:
        raise server.error(path, exc) from None
    if not stat.S_ISDIR(attrs.st_mode or 0):
        return [server.source(path, attrs)]
    found = sorted((p, a) for p, a in server.walk(path) if readable_kind(p))
    if not found:
        raise InputError(f"input.path: folder '{server.where}{path}' holds no .csv, .jsonl or .parquet file")
    return [server.source(p, a) for p, a in found]
