"""A private, throw-away Dovecot IMAP server for tests.

Each :class:`Dovecot` owns one temporary directory (config, logs, passwd files,
maildirs) and one loopback port, so tests never share state with each other or
with a system Dovecot.  It is meant to run as root on Debian (package
``dovecot-imapd``, see ``scripts/install-test-deps``): the login and mail
processes drop to the ``dovenull`` / ``dovecot`` users the package creates.

Typical use::

    server = Dovecot(tmp_path)
    server.start()
    try:
        server.append_many("inbox@example.test", "INBOX", [b"Subject: hi\\r\\n\\r\\nbody\\r\\n"])
        with server.client() as imap:
            imap.select_folder("INBOX")
    finally:
        server.stop()

With ``Dovecot(tmp_path, tls=True)`` the server also speaks TLS: STARTTLS on
``port`` and implicit TLS on ``imaps_port``, with a certificate for
127.0.0.1 / localhost signed by a private CA (``ca_file``) made for the
instance with the ``openssl`` command.  Plain LOGIN without TLS keeps working.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import weakref
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import imapclient
from imapclient.exceptions import IMAPClientError

DEFAULT_USER = "inbox@example.test"
DEFAULT_PASSWORD = "secret"

MAIL_USER = "dovecot"  # owns the maildirs; the static userdb maps every user to it
LOGIN_USER = "dovenull"

START_TIMEOUT = 30.0  # generous: the machine may be loaded (tests run in parallel)
STOP_TIMEOUT = 10.0
OPENSSL_TIMEOUT = 30.0

# openssl(1) settings for the private CA and the server certificate of a
# tls=True instance.  Explicit, so that the system's openssl.cnf (default
# extensions, policies) does not matter.  The extensions also satisfy
# VERIFY_X509_STRICT (Python >= 3.13 default contexts).
OPENSSL_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = dovecot test
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""
EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
CERT_DAYS = "3650"

Security = Literal["plain", "starttls", "tls"]

# Chunking for MULTIAPPEND: one APPEND command carries at most this many
# messages / bytes.
APPEND_CHUNK_MESSAGES = 500
APPEND_CHUNK_BYTES = 16 * 1024 * 1024

SPECIAL_USE_MAILBOXES = (
    ("Drafts", "\\Drafts"),
    ("Sent", "\\Sent"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
)


class DovecotError(RuntimeError):
    """The private Dovecot instance could not be started, stopped or driven."""


def _check_credentials(user: str, password: str) -> None:
    # The user name is a file name (passwd.d/<user>) and, via %u, the maildir name.
    if not user or user.startswith(".") or any(c in user for c in ":/\n%") or "\n" in password:
        raise ValueError(f"unsupported user name or password for this test server: {user!r}")


def _binary(name: str) -> str:
    """Path of a Dovecot program; Debian installs them in /usr/sbin, not always on PATH."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")
    if found is None:
        raise DovecotError(f"{name!r} not found; run scripts/install-test-deps")
    return found


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _kill_group(process: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL *process* and its process group (Dovecot's children), if still alive."""
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _live_children(pid: int) -> dict[int, str]:
    """Non-zombie processes in process group *pid* other than *pid* itself: pid -> title (Linux)."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            # Format: "pid (comm) state ppid pgrp ..."; comm may contain spaces.
            fields = text[text.rindex(")") + 2 :].split()
            other = int(stat.parent.name)
            if int(fields[2]) != pid or other == pid or fields[0] in ("Z", "X"):
                continue
            title = (stat.parent / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue  # the process went away meanwhile
        children[other] = title
    return children


def _make_traversable(path: Path) -> None:
    """Give "others" search (x) permission on *path* and all its ancestors.

    Dovecot's unprivileged processes (dovenull, dovecot) must be able to reach
    sockets in base_dir and the maildirs; pytest's tmp_path lives below a
    0700 directory, for instance.
    """
    for directory in [path, *path.parents]:
        mode = directory.stat().st_mode
        if not mode & 0o001:
            directory.chmod((mode & 0o7777) | 0o001)


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
    for dirpath, dirnames, filenames in os.walk(path):
        for name in [*dirnames, *filenames]:
            os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)


def _openssl(*args: str, cwd: Path) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise DovecotError("'openssl' not found; run scripts/install-test-deps (or apt-get install openssl)")
    result = subprocess.run(
        [binary, *args], cwd=cwd, capture_output=True, text=True, timeout=OPENSSL_TIMEOUT, check=False
    )
    if result.returncode != 0:
        raise DovecotError(f"openssl {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")


def _make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A fresh private CA and a server certificate for 127.0.0.1/localhost signed by it.

    Returns (CA certificate, server certificate, server key), all PEM files in *directory*.
    """
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "openssl.cnf"
    config.write_text(OPENSSL_CONFIG)
    for name in ("ca.key", "server.key"):  # openssl writes keys 0600 on its own; be sure of it
        (directory / name).unlink(missing_ok=True)
    _openssl(
        "req", "-x509", "-config", config.name, "-extensions", "ca_ext", *EC_KEY,
        "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=Dovecot test CA (private)",
        "-days", CERT_DAYS, "-sha256",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "req", "-new", "-config", config.name, *EC_KEY,
        "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-set_serial", f"0x{secrets.token_hex(8)}", "-days", CERT_DAYS, "-sha256",
        "-extfile", config.name, "-extensions", "server_ext", "-out", "server.pem",
        cwd=directory,
    )  # fmt: skip
    return directory / "ca.pem", directory / "server.pem", directory / "server.key"


def _chunks(messages: Iterable[bytes], max_count: int, max_bytes: int) -> Iterator[list[bytes]]:
    chunk: list[bytes] = []
    size = 0
    for message in messages:
        if chunk and (len(chunk) >= max_count or size + len(message) > max_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append(message)
        size += len(message)
    if chunk:
        yield chunk


class Dovecot:
    """A private Dovecot 2.3 IMAP server (plain text, loopback only) under *root*.

    With ``tls=True`` it also offers STARTTLS on :attr:`port` and implicit TLS
    on :attr:`imaps_port`, using a certificate for 127.0.0.1 / localhost signed
    by a private CA (:attr:`ca_file`); the CA and certificate are made once per
    instance and live in *root*/``tls``.  Plain-text LOGIN stays allowed.

    *root* holds ``dovecot.conf``, ``dovecot.log`` (Dovecot's own log),
    ``dovecot.stderr`` (master process output) and the symlinks ``mail``
    (``mail/<user>`` is each user's maildir, INBOX at its top), ``run``
    (base_dir) and ``passwd.d`` (one passwd-file per user).  Those three
    really live in a private runtime directory under the system temp dir:
    Dovecot's unprivileged processes must be able to traverse every parent
    of them, and pytest resets ``/tmp/pytest-of-<user>`` to 0700 whenever
    another pytest session starts, which would break a running server whose
    files live below tmp_path.  ``close()`` moves the maildirs into *root*
    (for post-mortems) and removes the runtime directory.
    """

    def __init__(
        self,
        root: Path,
        users: dict[str, str] | None = None,
        *,
        separator: str = "/",
        tls: bool = False,
        oauth2_introspection_url: str | None = None,
    ) -> None:
        try:
            self._mail_uid = pwd.getpwnam(MAIL_USER).pw_uid
            self._mail_gid = grp.getgrnam(MAIL_USER).gr_gid
            pwd.getpwnam(LOGIN_USER)
        except KeyError as exc:
            raise DovecotError(f"system user/group missing ({exc}); run scripts/install-test-deps") from exc
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._users: dict[str, str] = dict(users) if users else {DEFAULT_USER: DEFAULT_PASSWORD}
        for user, password in self._users.items():
            _check_credentials(user, password)
        self._separator = separator
        self._host = "127.0.0.1"
        self._port = _free_port(self._host)
        self._tls = tls
        # XOAUTH2/OAUTHBEARER logins, their tokens checked by POSTing them to this URL (RFC 7662 introspection:
        # the answer must say {"active": true, "username": <the login name>}).
        self._oauth2_url = oauth2_introspection_url
        self.oauth2_config_path = self.root / "dovecot-oauth2.conf.ext"
        self._imaps_port = _free_port(self._host) if tls else 0
        self._process: subprocess.Popen[bytes] | None = None
        self._finalizer = weakref.finalize(self, _kill_group, None)
        self._finalizer.detach()
        self._started_once = False

        self.config_path = self.root / "dovecot.conf"
        self.log_path = self.root / "dovecot.log"
        self.stderr_path = self.root / "dovecot.stderr"
        # Short (unix socket paths are limited to 108 bytes) and outside
        # pytest's tree; see the class docstring.
        self.runtime_dir = Path(tempfile.mkdtemp(prefix="dovecot-test-"))
        self._cleanup = weakref.finalize(self, shutil.rmtree, self.runtime_dir, ignore_errors=True)
        self.base_dir = self.runtime_dir / "run"
        self.mail_dir = self.runtime_dir / "mail"
        self.passwd_dir = self.runtime_dir / "passwd.d"
        self.state_dir = self.runtime_dir / "state"
        self.tls_dir = self.root / "tls"
        self._ca_file: Path | None = None
        self._cert_file: Path | None = None
        self._key_file: Path | None = None
        if tls:
            self._ca_file, self._cert_file, self._key_file = _make_certificates(self.tls_dir)

    # ------------------------------------------------------------------ props

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return self._port

    @property
    def tls(self) -> bool:
        return self._tls

    @property
    def imaps_port(self) -> int:
        """The implicit-TLS (IMAPS) port; only with ``tls=True``."""
        if not self._tls:
            raise DovecotError("this Dovecot was created without tls=True: no IMAPS port")
        return self._imaps_port

    @property
    def ca_file(self) -> Path:
        """PEM file of the private CA that signed the server certificate; only with ``tls=True``."""
        if self._ca_file is None:
            raise DovecotError("this Dovecot was created without tls=True: no CA")
        return self._ca_file

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this server's CA (and nothing else) and checks the host name."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    @property
    def users(self) -> dict[str, str]:
        """A copy of the user -> password mapping."""
        return dict(self._users)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def mail_path(self, user: str) -> Path:
        """The maildir root of *user* (INBOX lives directly in it; valid until close())."""
        return self.mail_dir / user

    # -------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start Dovecot; return once the port accepts connections and LOGIN works."""
        if self.running:
            return
        try:
            self._start_once()
        except DovecotError:
            # The port was picked with bind(0) and released again; someone may
            # have grabbed it in between.  Before the first successful start
            # nobody depends on the port number yet, so pick another one.
            if self._started_once or "Address already in use" not in self.log_tail():
                raise
            self._port = _free_port(self._host)
            if self._tls:
                self._imaps_port = _free_port(self._host)
            self._start_once()
        self._started_once = True

    def stop(self) -> None:
        """Stop Dovecot; return once the master process is gone and the port is closed."""
        process = self._process
        deadline = time.monotonic() + STOP_TIMEOUT
        if process is not None:
            if process.poll() is None:
                self._terminate(process, deadline)
            self._process = None
            self._finalizer.detach()
            (self.base_dir / "master.pid").unlink(missing_ok=True)
        for port in self._ports():
            while _port_open(self._host, port):
                if time.monotonic() > deadline:
                    raise DovecotError(f"port {port} still open after stop\n{self.log_tail()}")
                time.sleep(0.05)

    def _ports(self) -> list[int]:
        return [self._port, self._imaps_port] if self._tls else [self._port]

    def _terminate(self, process: subprocess.Popen[bytes], deadline: float) -> None:
        # A graceful SIGTERM shutdown of the Dovecot 2.3 master ends with a
        # hard-coded sleep(1) after it has told its log process to quit, which
        # would make every stop()/restart() cost a second.  Once every child
        # but the log process is gone there is nothing left to wait for, so
        # SIGKILL the master then (the listening socket closes with it); the
        # log process sees EOF on its pipes, writes what is queued and exits.
        #
        # The master only sends its imap processes SIGQUIT (stop accepting)
        # and gives them SIGTERM after several seconds; one with a client in
        # IDLE would keep the master (and stop()) waiting that long.  SIGTERM
        # them at once, as shutdown_clients promises: each says
        # "* BYE Server shutting down." to its client and exits.
        process.send_signal(signal.SIGTERM)
        told: set[int] = set()
        while process.poll() is None:
            if time.monotonic() > deadline:
                # Something hangs; children would keep the listening socket
                # open, so kill the whole process group.
                _kill_group(process)
                break
            children = _live_children(process.pid)
            if all(title.endswith("/log") for title in children.values()):
                process.kill()
                break
            for pid, title in children.items():
                if title.endswith("/imap") and pid not in told:
                    told.add(pid)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGTERM)
            time.sleep(0.02)
        process.wait(timeout=STOP_TIMEOUT)
        while _live_children(process.pid):
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                break
            time.sleep(0.02)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server, move the maildirs to *root*/mail and remove the runtime directory."""
        self.stop()
        if not self._cleanup.alive:
            return
        link = self.root / "mail"
        if link.is_symlink() and self.mail_dir.is_dir():
            link.unlink()
            with contextlib.suppress(OSError):
                shutil.move(self.mail_dir, link)
        self._cleanup()

    def __enter__(self) -> Dovecot:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _start_once(self) -> None:
        self._prepare_files()
        with self.stderr_path.open("ab") as stderr:
            self._process = subprocess.Popen(
                [_binary("dovecot"), "-F", "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                start_new_session=True,
            )
        # Safety net: never leave a Dovecot behind if stop() is not called
        # (object garbage-collected or interpreter exiting).
        self._finalizer = weakref.finalize(self, _kill_group, self._process)
        deadline = time.monotonic() + START_TIMEOUT
        last_error = "never accepted a connection"
        while True:
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                raise DovecotError(f"dovecot exited with status {code}\n{self.log_tail()}")
            if all(_port_open(self._host, port) for port in self._ports()):
                try:
                    # With TLS, also make sure the certificate is served (and verifies).
                    checks: tuple[Security, ...] = ("plain", "tls") if self._tls else ("plain",)
                    for security in checks:
                        imap = self.client(timeout=2.0, security=security)
                        imap.logout()
                except (OSError, IMAPClientError) as exc:
                    last_error = f"LOGIN failed: {exc!r}"
                else:
                    return
            if time.monotonic() > deadline:
                self.stop()
                raise DovecotError(
                    f"dovecot did not come up on {self._host}:{self._port} within "
                    f"{START_TIMEOUT:.0f}s ({last_error})\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def log_tail(self, lines: int = 40) -> str:
        """The last *lines* lines of Dovecot's log and of the master's stderr."""
        parts = []
        for path in (self.stderr_path, self.log_path):
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                if text:
                    parts.append(f"--- {path.name} ---\n" + "\n".join(text))
        return "\n".join(parts) or "(no dovecot log output)"

    # ------------------------------------------------------------ files/users

    def _prepare_files(self) -> None:
        if not self._cleanup.alive:
            raise DovecotError("this Dovecot instance has been closed")
        self._link_into_root()
        self.state_dir.mkdir(exist_ok=True)
        self.base_dir.mkdir(exist_ok=True)
        self.mail_dir.mkdir(exist_ok=True)
        # Must not exist (see the anvil service in the config); a stale one
        # would make auth log connection errors.
        (self.base_dir / "anvil-auth-penalty").unlink(missing_ok=True)
        _make_traversable(self.base_dir)
        _make_traversable(self.mail_dir)
        _chown_tree(self.mail_dir, self._mail_uid, self._mail_gid)
        for user in self._users:
            self._write_passwd(user)
        if self._oauth2_url:
            self.oauth2_config_path.write_text(
                f"introspection_mode = post\nintrospection_url = {self._oauth2_url}\nforce_introspection = yes\n"
                "username_attribute = username\nactive_attribute = active\nactive_value = true\n")
            _make_traversable(self.oauth2_config_path.parent)
        self.config_path.write_text(self._config())

    def _link_into_root(self) -> None:
        for name, target in (("mail", self.mail_dir), ("run", self.base_dir), ("passwd.d", self.passwd_dir)):
            link = self.root / name
            if link.is_symlink():
                if link.readlink() == target:
                    continue
                link.unlink()  # left by an instance that was not closed
            elif name == "mail" and link.is_dir() and not self.mail_dir.exists():
                # Maildirs moved here by close() of an earlier instance: reuse them.
                shutil.move(link, self.mail_dir)
            elif link.is_dir():
                shutil.rmtree(link)
            elif link.exists():
                link.unlink()
            link.symlink_to(target)

    def add_user(self, user: str, password: str) -> None:
        """Add *user* or change its password; takes effect at once, also while running.

        Each user has its own passwd-file (``passwd.d/<user>``), which Dovecot
        reads the first time that user logs in, so a new user works
        immediately.  Dovecot re-checks an already loaded passwd-file at most
        once per second, so a password *change* on a running server waits for
        the next second and then verifies that the new password works.
        """
        _check_credentials(user, password)
        changed = user in self._users
        self._users[user] = password
        self._write_passwd(user)
        if self.running:
            self._wait_for_login(user, password, next_second=changed)

    def _wait_for_login(self, user: str, password: str, *, next_second: bool) -> None:
        if next_second:
            time.sleep(1.02 - time.time() % 1)
        deadline = time.monotonic() + 30.0
        while True:
            try:
                imap = self.client(user, password, timeout=10.0)
            except imapclient.exceptions.LoginError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
            else:
                imap.logout()
                return

    def _write_passwd(self, user: str) -> None:
        password = self._users[user]
        self.passwd_dir.mkdir(exist_ok=True)
        path = self.passwd_dir / user
        old_mtime = path.stat().st_mtime if path.exists() else None
        tmp = path.with_name(f".{user}.tmp")
        tmp.write_text(f"{user}:{{PLAIN}}{password}\n")
        tmp.chmod(0o644)
        if old_mtime is not None and int(time.time()) <= int(old_mtime):
            # Dovecot re-reads a passwd-file when its mtime (seconds) or size
            # changes; make sure a same-size rewrite within one second is seen.
            new_mtime = int(old_mtime) + 1
            os.utime(tmp, (new_mtime, new_mtime))
        tmp.replace(path)

    def _config(self) -> str:
        mailboxes = "".join(
            f"  mailbox {name} {{\n    special_use = {flag}\n    auto = subscribe\n  }}\n"
            for name, flag in SPECIAL_USE_MAILBOXES
        )
        return f"""\
# Generated by tests/support/dovecot.py -- private test instance.
protocols = imap
listen = {self._host}
base_dir = {self.base_dir}
state_dir = {self.state_dir}
instance_name = dovecot-test-{self._port}
log_path = {self.log_path}
info_log_path = {self.log_path}
debug_log_path = {self.log_path}
shutdown_clients = yes
# An IDLE session learns of new mail through inotify, at most fs.inotify.max_user_instances (128) per system user,
# shared by every Dovecot on the machine: a session without one looks every mailbox_idle_check_interval (30 s by
# default). Once a second keeps IDLE tests prompt while other test sessions hold the instances.
mailbox_idle_check_interval = 1 secs

default_login_user = {LOGIN_USER}
default_internal_user = {MAIL_USER}
default_internal_group = {MAIL_USER}
first_valid_uid = {self._mail_uid}
first_valid_gid = {self._mail_gid}

{self._ssl_config()}
disable_plaintext_auth = no
auth_mechanisms = plain login{" xoauth2 oauthbearer" if self._oauth2_url else ""}
# Usernames exactly as given (Dovecot's default, %Lu, lowercases them).
auth_username_format = %u
auth_verbose = yes
auth_failure_delay = 0
# No stats process connections: avoids 5 s stats-writer handshake timeouts of
# login processes while the server shuts down.
stats_writer_socket_path =

passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.passwd_dir}/%u
}}
{self._oauth2_passdb()}userdb {{
  driver = static
  args = uid={MAIL_USER} gid={MAIL_USER} home={self.mail_dir}/%u
}}

mail_location = maildir:{self.mail_dir}/%u
mail_fsync = never
mail_max_userip_connections = 100

namespace inbox {{
  inbox = yes
  separator = {self._separator}
{mailboxes}}}

service imap-login {{
  chroot =
  inet_listener imap {{
    address = {self._host}
    port = {self._port}
  }}
  inet_listener imaps {{
{self._imaps_listener()}
  }}
}}
service anvil {{
  chroot =
  # No anvil-auth-penalty socket => auth disables its brute-force penalty
  # (up to 15 s extra delay per failed login from the same IP).
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service stats {{
  chroot =
}}
"""

    def _oauth2_passdb(self) -> str:
        if not self._oauth2_url:
            return ""
        return f"""passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {self.oauth2_config_path}
}}
"""

    def _ssl_config(self) -> str:
        if not self._tls:
            return "ssl = no"
        # "yes", not "required": plain-text LOGIN without STARTTLS stays allowed.
        return f"""\
ssl = yes
ssl_cert = <{self._cert_file}
ssl_key = <{self._key_file}
ssl_min_protocol = TLSv1.2"""

    def _imaps_listener(self) -> str:
        if not self._tls:
            return "    port = 0"
        return f"""\
    address = {self._host}
    port = {self._imaps_port}
    ssl = yes"""

    # ---------------------------------------------------------------- clients

    def client(
        self,
        user: str | None = None,
        password: str | None = None,
        *,
        timeout: float = 10.0,
        security: Security = "plain",
    ) -> imapclient.IMAPClient:
        """A logged-in IMAPClient (defaults: the first configured user, plain text).

        ``security="tls"`` connects to :attr:`imaps_port`, ``"starttls"`` upgrades
        the plain port first; both verify the certificate against :attr:`ca_file`.
        """
        if user is None:
            user = next(iter(self._users))
        if password is None:
            password = self._users[user]
        if security == "tls":
            imap = imapclient.IMAPClient(
                self._host, port=self.imaps_port, ssl=True, ssl_context=self.ssl_context(), timeout=timeout
            )
        else:
            imap = imapclient.IMAPClient(self._host, port=self._port, ssl=False, timeout=timeout)
        try:
            if security == "starttls":
                imap.starttls(self.ssl_context())
            imap.login(user, password)
        except BaseException:
            imap.shutdown()
            raise
        return imap

    def append_many(self, user: str, folder: str, messages: Iterable[bytes]) -> int:
        """APPEND *messages* to *folder* (created if missing); return how many were appended.

        Uses MULTIAPPEND (RFC 3502) in chunks when the server offers it,
        otherwise one APPEND per message.
        """
        count = 0
        with self.client(user, timeout=60.0) as imap:
            if not imap.folder_exists(folder):
                imap.create_folder(folder)
            multi = imap.has_capability("MULTIAPPEND")
            for chunk in _chunks(messages, APPEND_CHUNK_MESSAGES, APPEND_CHUNK_BYTES):
                if multi:
                    imap.multiappend(folder, chunk)
                else:
                    for message in chunk:
                        imap.append(folder, message)
                count += len(chunk)
        return count

    def doveadm(self, *args: str) -> str:
        """Run ``doveadm -c <our config> *args`` against this instance; return stdout."""
        result = subprocess.run(
            [_binary("doveadm"), "-c", str(self.config_path), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            raise DovecotError(
                f"doveadm {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}\n{self.log_tail()}"
            )
        return result.stdout

    def reset_uidvalidity(self, user: str, folder: str, *, renumber: bool = False) -> int:
        """Give *folder* a new UIDVALIDITY, keeping its messages; return the new value.

        Uses ``doveadm mailbox update --uid-validity`` (works for INBOX too,
        which IMAP can't delete).  The messages, flags and UIDs stay as they
        were; only UIDVALIDITY changes -- like a server whose index was
        rebuilt.  IMAP sessions that have the folder selected at that moment
        are disconnected by Dovecot ("view is now inconsistent").

        With ``renumber=True`` every message is then re-appended (same body,
        flags and internal date) and the originals expunged, so that besides
        UIDVALIDITY all UIDs change too (the old UIDs no longer exist).
        """
        with self.client(user) as imap:
            old = self._uidvalidity(imap, folder)
        new = old + 1 if old < 0xFFFFFFFF else 1
        # Like Dovecot itself, prefer a time-based value when it is larger.
        new = max(new, min(int(time.time()), 0xFFFFFFFF))
        self.doveadm("mailbox", "update", "-u", user, "--uid-validity", str(new), folder)
        with self.client(user, timeout=60.0) as imap:
            current = self._uidvalidity(imap, folder)
            if current != new:
                raise DovecotError(f"UIDVALIDITY of {folder!r} is {current} after reset, expected {new}")
            if renumber:
                self._renumber(imap, folder)
        return current

    @staticmethod
    def _uidvalidity(imap: imapclient.IMAPClient, folder: str) -> int:
        return int(imap.folder_status(folder, [b"UIDVALIDITY"])[b"UIDVALIDITY"])

    @staticmethod
    def _renumber(imap: imapclient.IMAPClient, folder: str) -> None:
        imap.select_folder(folder)
        uids = imap.search("ALL")
        if not uids:
            imap.unselect_folder()
            return
        fetched = imap.fetch(uids, ["BODY.PEEK[]", "FLAGS", "INTERNALDATE"])
        copies: list[dict[str, Any]] = [
            {
                "msg": data[b"BODY[]"],
                "flags": [f for f in data[b"FLAGS"] if f != b"\\Recent"],
                "date": data[b"INTERNALDATE"],
            }
            for _, data in sorted(fetched.items())
        ]
        for start in range(0, len(copies), APPEND_CHUNK_MESSAGES):
            imap.multiappend(folder, copies[start : start + APPEND_CHUNK_MESSAGES])
        imap.delete_messages(uids)
        imap.uid_expunge(uids)
        imap.unselect_folder()
