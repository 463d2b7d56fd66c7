"""The one config loader: YAML file + environment, validated once into a `Config` object.

Errors name the file, the line, the key path and what is wrong, so `maild config check` can say
exactly where to look. Secrets never live in the YAML: passwords and tokens come from an
environment variable or a file named there.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, IPvAnyNetwork, ValidationError, field_validator, model_validator

DEFAULT_CONFIG_NAME = "maild.yaml"

# Environment variables that override a key of the file (documented in config/maild.yaml).
ENV_OVERRIDES: dict[str, tuple[str, ...]] = {
    "MAILD_DATABASE_URL": ("database", "url"),
    "MAILD_BLOB_DIR": ("storage", "blob_dir"),
    "MAILD_LOG_LEVEL": ("log", "level"),
    "MAILD_LOG_FORMAT": ("log", "format"),
}


class ConfigError(Exception):
    """A config that cannot be used; the message says where and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseConfig(_Strict):
    url: str = "sqlite:///data/maild.db"

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        if not url.startswith(("sqlite://", "postgresql://", "postgresql+psycopg://", "postgres://")):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return url


class StorageConfig(_Strict):
    blob_dir: str = "data/blobs"


class IngestConfig(_Strict):
    max_message_bytes: int = Field(default=50 * 1024 * 1024, gt=0)
    batch_messages: int = Field(default=200, gt=0, le=5000)
    batch_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    parse_workers: int = Field(default=0, ge=0, description="0 means one per CPU core")
    mark_seen: bool = False
    poll_interval: float = Field(default=60.0, gt=0)
    idle_renew: float = Field(default=25 * 60.0, gt=0, lt=29 * 60)
    reconnect_max_delay: float = Field(default=8.0, gt=0)
    login_retry_max_delay: float = Field(default=300.0, gt=0)
    idle_check_interval: float = Field(default=120.0, gt=0)
    lock_ttl: float = Field(default=60.0, gt=1)


MATCHERS = ("thread", "address", "domain", "reference", "display_name")


class ReferencePattern(_Strict):
    pattern: str = Field(min_length=1, description="regular expression of a document number")
    kind: str = Field(default="invoice", min_length=1)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return pattern


class MatchingConfig(_Strict):
    instance_id: str = Field(default="maild0", pattern=r"^[a-z0-9]{4,16}$")
    order: list[Literal["thread", "address", "domain", "reference", "display_name"]] = Field(
        default_factory=lambda: ["thread", "address", "domain", "reference"], min_length=1)
    min_confidence: float = Field(default=0.5, ge=0, le=1)
    own_domains: list[str] = Field(default_factory=list)
    own_addresses: list[str] = Field(default_factory=list)
    free_mail_domains: list[str] = Field(default_factory=list, description="added to the shipped list")
    # The authserv-ids of our own receiving server(s): their Authentication-Results decide whether a sender was
    # authenticated (maild/ingest/authentication.py). Empty: none are read, a forged From is believed.
    trusted_authserv_ids: list[str] = Field(default_factory=list)
    references: list[ReferencePattern] = Field(default_factory=lambda: [
        ReferencePattern(pattern=r"FA\d{4}-\d{4}\b", kind="invoice"),
        ReferencePattern(pattern=r"PR\d{4}-\d{4}\b", kind="proposal")])


class InvitationsConfig(_Strict):
    """Calendar invitations in ingested mail: limits per message (what is over them is reported, not applied)."""

    max_meetings_per_message: int = Field(default=20, ge=1)
    max_attendees: int = Field(default=100, ge=1)


class FilingConfig(_Strict):
    action: Literal["move", "copy", "keywords", "none"] = "none"
    matched_folder: str = "Customers/{{ thirdparty.name }}"
    triage_folder: str | None = "Triage"
    keywords: list[str] = Field(default_factory=list)
    max_attempts: int = Field(default=10, gt=0)

    @field_validator("matched_folder", "triage_folder")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is not None:
            from jinja2 import TemplateSyntaxError

            from maild.templates.sandbox import sandbox

            try:
                sandbox().parse(value)
            except TemplateSyntaxError as exc:
                raise ValueError(f"template error: {exc.message}") from None
        return value


SECRET_FILE_MAX_BYTES = 64 * 1024  # a password, a key or an OAuth2 token; anything larger is not a secret file


def read_secret(owner: str, env: str | None, file: str | None, base_dir: Path, *,
                file_key: str = "password_file") -> str | None:
    """A secret from the environment variable `env`, else the file `file` (stripped), read now; None with
    neither. The file must be a regular file (not a device, a pipe or a folder) of at most SECRET_FILE_MAX_BYTES.
    Errors (ConfigError) name the variable or the file, never a value."""
    if env:
        value = os.environ.get(env)
        if value is None:
            raise ConfigError(f"{owner}: environment variable {env} is not set")
        return value
    if not file:
        return None
    path = resolve_path(base_dir, file)
    try:
        # O_NONBLOCK: opening a FIFO does not wait for a writer (it is refused just below).
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise ConfigError(f"{owner}: {file_key} {path} is not a regular file")
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(SECRET_FILE_MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{owner}: cannot read {file_key} {path}: {exc.strerror or exc}") from exc
    if len(data) > SECRET_FILE_MAX_BYTES:
        raise ConfigError(f"{owner}: {file_key} {path} is larger than {SECRET_FILE_MAX_BYTES // 1024} KiB: "
                          "not a secret file")
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"{owner}: {file_key} {path} is not UTF-8 text") from None


class ImapSourceConfig(_Strict):
    type: Literal["imap"]
    name: str = Field(min_length=1)
    host: str = Field(min_length=1)
    port: int | None = Field(default=None, gt=0, lt=65536)
    security: Literal["tls", "starttls", "plain"] = "tls"
    username: str = Field(min_length=1)
    auth: Literal["password", "xoauth2"] = "password"
    password_env: str | None = None
    password_file: str | None = None
    # Only for one-off --source URLs; never read from a config file (see _no_inline_secret).
    password: str | None = Field(default=None, exclude=True, repr=False)
    folders: list[str] = Field(default_factory=lambda: ["INBOX"], min_length=1)
    max_connections: int = Field(
        default=8, ge=1, description="IMAP connections maild's ingest keeps open to this account: a folder each while "
        "they fit, else the first max_connections - 1 folders keep theirs and the rest are polled in turn over one "
        "shared connection every ingest.poll_interval. Providers cap connections per account (Gmail 15; Dovecot's "
        "default 10 per user and address); the Sent copy and `maild config check` open one more briefly")
    verify_tls: bool = True
    ca_file: str | None = Field(default=None, description="PEM file of a private CA to trust for this server")
    timeout: float = Field(default=60.0, gt=0)
    filing: FilingConfig | None = Field(default=None, description="overrides the global filing: for this account")

    @model_validator(mode="after")
    def _secret_source(self) -> ImapSourceConfig:
        if self.password is None and not (self.password_env or self.password_file):
            raise ValueError("needs password_env (an environment variable) or password_file")
        return self

    @property
    def effective_port(self) -> int:
        return self.port or (993 if self.security == "tls" else 143)

    def secret(self, base_dir: Path) -> str:
        """The password or XOAUTH2 token, read now (so a rotated file is picked up on reconnect)."""
        if self.password is not None:
            return self.password
        value = read_secret(f"source {self.name!r}", self.password_env, self.password_file, base_dir)
        assert value is not None  # the model requires password_env or password_file
        return value


class MaildirSourceConfig(_Strict):
    type: Literal["maildir"]
    name: str = Field(min_length=1)
    path: str = Field(min_length=1)
    poll_interval: float = Field(default=5.0, gt=0)


SourceConfig = Annotated[ImapSourceConfig | MaildirSourceConfig, Field(discriminator="type")]


class SmtpTransportConfig(_Strict):
    type: Literal["smtp", "file"] = "file"
    directory: str = "data/sent-mail"  # file transport: one .eml per message (the embedded default)
    host: str = "localhost"
    port: int | None = Field(default=None, gt=0, lt=65536)
    security: Literal["tls", "starttls", "plain"] = "starttls"
    username: str | None = None
    auth: Literal["password", "xoauth2"] = Field(
        default="password", description="xoauth2: the secret is an OAuth2 access token (Gmail, Microsoft 365), "
                                        "read again for each new connection: a token helper may rewrite the file")
    password_env: str | None = None
    password_file: str | None = None
    verify_tls: bool = True
    ca_file: str | None = None
    timeout: float = Field(default=60.0, gt=0)
    max_connections: int = Field(default=2, gt=0, le=50)
    per_domain_per_minute: int = Field(default=120, gt=0)
    max_attempts: int = Field(default=8, gt=0)
    retry_max_delay: float = Field(default=3600.0, gt=0)

    @model_validator(mode="after")
    def _xoauth2_needs_a_token(self) -> SmtpTransportConfig:
        if self.type == "smtp" and self.auth == "xoauth2" and not (
                self.username and (self.password_env or self.password_file)):
            raise ValueError("auth xoauth2 needs username and password_env or password_file (the access token)")
        return self

    @property
    def effective_port(self) -> int:
        return self.port or {"tls": 465, "starttls": 587, "plain": 25}[self.security]

    def secret(self, base_dir: Path) -> str | None:
        """The password or XOAUTH2 token, read now (a rotated file is picked up on the next connection); None
        when neither password_env nor password_file is set."""
        return read_secret("outbound.transport", self.password_env, self.password_file, base_dir)


class OutboundConfig(_Strict):
    sender: str = "maild@localhost"  # From of maild's mail; its domain ends our Message-IDs
    sender_name: str = ""
    reply_to_plus: bool = False  # Reply-To sender+maild.<instance>.<token>@domain, so answers thread back
    templates_dir: str = "templates"
    default_language: str = "en"
    # One template's rendering (subject, text, HTML): at most this long and this large, else the mail fails
    # with the reason (a loop that never ends cannot stall sending).
    template_max_seconds: float = Field(default=5.0, gt=0)
    template_max_bytes: int = Field(default=2_000_000, gt=0)
    sent_folder_source: str | None = None  # IMAP source whose Sent folder (SPECIAL-USE) gets a copy
    # VERP: each mail's envelope sender becomes <local>+maild.<instance>.<token>@<domain> of this address, so a
    # delivery-failure notice is tied to its outbox row (docs/machine-mail.md). None: the envelope sender is `sender`.
    return_path: str | None = None

    @field_validator("return_path")
    @classmethod
    def _plain_address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not re.fullmatch(r"[A-Za-z0-9.!#$%&'*/=?^_`{|}~-]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z0-9-]{2,63}", value):
            raise ValueError("expected a plain address such as bounces@example.com (no display name, no +tag: "
                             "maild adds +maild.<instance>.<token>)")
        return value
    company: dict[str, Any] = Field(default_factory=dict)  # `company` in templates: name, address, bank...
    transport: SmtpTransportConfig = SmtpTransportConfig()


class TrackingConfig(_Strict):
    enabled: bool = True
    base_url: str = "http://127.0.0.1:8025"  # how recipients reach the tracking endpoint
    listen_host: str = "127.0.0.1"
    listen_port: int = Field(default=8025, ge=0, lt=65536)
    secret_env: str | None = "MAILD_TRACKING_SECRET"
    secret_file: str | None = None
    truncate_ip: bool = True
    scanner_seconds: float = Field(default=10.0, ge=0)  # a click this soon after sending is likely a scanner
    repeat_window: float = Field(default=3600.0, ge=0)  # seconds: one client's repeats are counted, not new events
    max_connections: int = Field(default=500, ge=1)  # open HTTP connections; past it the oldest idle one is dropped
    header_timeout: float = Field(default=10.0, gt=0)  # seconds a client has to send a whole request head
    # Where open/click events are written: "process", a writer process of its own (the endpoint's process only
    # answers and queues), or "thread", a thread of the daemon's process (one process fewer, a slower pixel).
    writer: Literal["process", "thread"] = "process"


class WebConfig(_Strict):
    """The web app and JSON API (maild/web/): its own listener, not the public tracking one (which has 8025)."""

    enabled: bool = True  # served by `maild run`; `maild web` serves it alone
    listen_host: str = "127.0.0.1"
    listen_port: int = Field(default=8026, ge=0, lt=65536)
    secret_env: str | None = None  # signs session cookies; else secret_file (created owner-only when missing)
    secret_file: str = "data/web.secret"
    session_hours: float = Field(default=12.0, gt=0)  # a login lasts this long
    secure_cookies: Literal["auto", "always", "never"] = "auto"  # auto: Secure when the request came over https
    login_max_failures: int = Field(default=5, ge=1)  # failed logins of one user name before it waits
    login_lockout_seconds: float = Field(default=900.0, gt=0)  # how long it waits (and the window failures count in)
    page_size: int = Field(default=50, ge=1, le=500)  # rows per page (timeline, search, lists)


class BusinessHoursConfig(_Strict):
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = ["mon", "tue", "wed", "thu", "fri"]
    start: str = Field(default="08:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    end: str = Field(default="18:00", pattern=r"^([01]\d|2[0-4]):[0-5]\d$")


class WebhookSecretConfig(_Strict):
    """Where one webhook signing secret is read (a rule names it: `webhook: {secret: NAME}`)."""

    env: str | None = Field(default=None, min_length=1)
    file: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_source(self) -> WebhookSecretConfig:
        if (self.env is None) == (self.file is None):
            raise ValueError("expected exactly one of env (an environment variable) or file (a path)")
        return self


class RulesConfig(_Strict):
    enabled: bool = True
    dir: str = "rules"  # every *.yaml in it, in name order; relative to the config file's folder
    timezone: str = "UTC"  # for cron schedules, business hours, `today`
    business_hours: BusinessHoursConfig = BusinessHoursConfig()
    sweep_interval: float = Field(default=300.0, gt=0)  # seconds between date-offset sweeps (also run at start)
    event_interval: float = Field(default=5.0, gt=0)  # seconds between looks at new timeline events
    misfire_grace: float = Field(default=3600.0, gt=0)  # a schedule missed by more than this is skipped
    lease_ttl: float = Field(default=60.0, gt=5)  # the active scheduler's lease; another daemon takes over after it
    # The only secrets webhook rules may sign with, by name (a rule says `secret: NAME`).
    webhook_secrets: dict[str, WebhookSecretConfig] = Field(default_factory=dict)
    # Webhooks reach public addresses only; these networks (CIDR, or one address) may be reached although they
    # are private, loopback, link-local...: an internal CRM at 10.1.2.3, a test receiver at 127.0.0.1.
    webhook_allow_networks: list[IPvAnyNetwork] = Field(default_factory=list)

    @field_validator("webhook_secrets")
    @classmethod
    def _secret_names(cls, secrets: dict[str, WebhookSecretConfig]) -> dict[str, WebhookSecretConfig]:
        bad = [name for name in secrets if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", name)]
        if bad:
            raise ValueError(f"secret names are letters, digits, . _ - (up to 64); not {', '.join(map(repr, bad))}")
        return secrets

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as Europe/Berlin)") from None
        return value


class MachineMailConfig(_Strict):
    """Bounces, auto-replies, complaint reports and list mail (docs/machine-mail.md)."""

    classify: bool = True  # classify each mail at ingest; off: every mail counts as written by a person
    bounce_folder: str | None = None  # IMAP folder for notices about mail we cannot identify (None: triage_folder)
    soft_bounce_limit: int = Field(default=3, ge=1)  # soft bounces within the window that make an address undeliverable
    soft_bounce_window: float = Field(default=14 * 86400.0, gt=0)  # seconds
    # An event rule sends no more mail to an address that rules mailed this many times in 24 h (0: no cap).
    rule_mail_daily_cap: int = Field(default=3, ge=0)
    # Mail stored before classification is classified by `maild run` in the background, this many per batch
    # (0: not in the background; `maild classify --backfill` does it), with at least this many seconds between
    # two batches (and never less than the batch took).
    backfill_batch: int = Field(default=100, ge=0, le=10_000)
    backfill_pause: float = Field(default=1.0, ge=0, le=3600)


class DunningConfig(_Strict):
    """Reminder letters and holds (docs/rules.md, "Holds" and "Reminder letters")."""

    payment_days: int = Field(default=10, ge=1, le=90)  # a reminder letter asks for payment this many days later
    # Mail from a customer holds an invoice in dunning when it is a human reply in the thread of one of its
    # reminders, names the invoice's number, or contains one of these phrases (case-insensitive, whole words).
    hold_phrases: list[str] = Field(default_factory=lambda: [
        "bezahlt", "überwiesen", "ueberwiesen", "Widerspruch", "Reklamation", "paid", "transferred", "dispute"])
    hold_owner: str | None = None  # who gets the task when the third party has no owner (else: nobody named)
    hold_escalate_days: int = Field(default=7, ge=1, le=365)  # an unresolved hold escalates after this many days


class LogConfig(_Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"


class Config(_Strict):
    database: DatabaseConfig = DatabaseConfig()
    storage: StorageConfig = StorageConfig()
    ingest: IngestConfig = IngestConfig()
    sources: list[SourceConfig] = Field(default_factory=list)
    log: LogConfig = LogConfig()
    matching: MatchingConfig = MatchingConfig()
    filing: FilingConfig = FilingConfig()
    invitations: InvitationsConfig = InvitationsConfig()
    outbound: OutboundConfig = OutboundConfig()
    tracking: TrackingConfig = TrackingConfig()
    rules: RulesConfig = RulesConfig()
    machine_mail: MachineMailConfig = MachineMailConfig()
    web: WebConfig = WebConfig()
    dunning: DunningConfig = DunningConfig()
    # Where relative paths are resolved from: the config file's folder.
    base_dir: Path = Field(default=Path("."), exclude=True)

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, sources: list[Any]) -> list[Any]:
        names = [s.name for s in sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique; repeated: {', '.join(dupes)}")
        return sources

    @model_validator(mode="after")
    def _webhook_secrets_of_their_own(self) -> Config:
        """A webhook secret is not another secret of this config: its receiver could recover it from the signature
        (an HMAC of a body it knows) by guessing offline."""
        envs, files = self._other_secrets()
        for name, declared in self.rules.webhook_secrets.items():
            other = envs.get(declared.env or "") or files.get(
                resolve_path(self.base_dir, declared.file) if declared.file else None)
            if other:
                raise ValueError(f"rules.webhook_secrets.{name}: this is also {other}; a webhook receiver could "
                                 "recover it from the signature: give webhooks a secret of their own")
        return self

    def _other_secrets(self) -> tuple[dict[str, str], dict[Path | None, str]]:
        """The environment variables and files of the config's other secrets (and the variables that override
        keys), each with what it is."""
        envs = {var: f"the environment variable overriding {'.'.join(keys)}" for var, keys in ENV_OVERRIDES.items()}
        files: dict[Path | None, str] = {}
        owners: list[tuple[str, str | None, str | None]] = [
            ("outbound.transport.password", self.outbound.transport.password_env,
             self.outbound.transport.password_file),
            ("tracking.secret", self.tracking.secret_env, self.tracking.secret_file),
            ("web.secret", self.web.secret_env, self.web.secret_file)]
        owners += [(f"the password of source {s.name!r}", s.password_env, s.password_file)
                   for s in self.sources if isinstance(s, ImapSourceConfig)]
        for what, env, file in owners:
            if env:
                envs[env] = what
            if file:
                files[resolve_path(self.base_dir, file)] = what
        return envs, files

    @property
    def database_url(self) -> str:
        """The URL with a relative SQLite path resolved against the config's folder."""
        url = self.database.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            return prefix + str(resolve_path(self.base_dir, url[len(prefix):]))
        if url.startswith("postgres://"):
            url = "postgresql://" + url[len("postgres://"):]
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://"):]
        return url

    @property
    def blob_dir(self) -> Path:
        return resolve_path(self.base_dir, self.storage.blob_dir)

    @property
    def rules_dir(self) -> Path:
        return resolve_path(self.base_dir, self.rules.dir)

    def with_sources(self, sources: list[Any]) -> Config:
        return self.model_copy(update={"sources": sources})


def resolve_path(base_dir: Path, value: str) -> Path:
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else (base_dir / path).resolve()


def find_config_path(explicit: str | None) -> Path | None:
    """--config, then MAILD_CONFIG, then ./maild.yaml if present; None means built-in defaults."""
    chosen = explicit or os.environ.get("MAILD_CONFIG")
    if chosen:
        return Path(chosen)
    local = Path(DEFAULT_CONFIG_NAME)
    return local if local.exists() else None


def load_config(path: Path | None, environ: dict[str, str] | None = None) -> Config:
    environ = dict(os.environ) if environ is None else environ
    data: dict[str, Any] = {}
    lines: dict[tuple[str | int, ...], int] = {}
    where = "built-in defaults"
    if path is not None:
        where = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read config: {exc.strerror or exc}") from exc
        data, lines = _parse_yaml(text, where)
    for var, keys in ENV_OVERRIDES.items():
        if environ.get(var):
            node = data
            for key in keys[:-1]:
                node = node.setdefault(key, {}) if isinstance(node, dict) else {}
            if isinstance(node, dict):
                node[keys[-1]] = environ[var]
    if "base_dir" in data:
        raise ConfigError(f"{where}: 'base_dir' is not a config key")
    base_dir = path.resolve().parent if path is not None else Path.cwd()
    try:
        return Config.model_validate({**data, "base_dir": base_dir})
    except ValidationError as exc:
        raise ConfigError(_describe(exc, where, lines, data)) from None


def _parse_yaml(text: str, where: str) -> tuple[dict[str, Any], dict[tuple[str | int, ...], int]]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}{line}: invalid YAML: {problem}") from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}:1: the top level must be a mapping of keys, not {type(data).__name__}")
    lines: dict[tuple[str | int, ...], int] = {}
    _collect_lines(node, (), lines)
    return data, lines


def _collect_lines(node: yaml.Node | None, path: tuple[str | int, ...], out: dict) -> None:
    if node is None:
        return
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = (*path, key_node.value)
            _collect_lines(value_node, key, out)
            out[key] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _collect_lines(item, (*path, index), out)


def _describe(exc: ValidationError, where: str, lines: dict, data: dict) -> str:
    messages = []
    for error in exc.errors():
        loc = tuple(part for part in error["loc"] if not _is_union_tag(part, data))
        msg = error["msg"].removeprefix("Value error, ")
        named = re.match(r"^([a-z_]+(?:\.[\w.-]+)+): (.*)$", msg, re.DOTALL) if not loc else None
        if named:  # a check across sections names the key it is about
            loc, msg = tuple(named.group(1).split(".")), named.group(2)
        line = _nearest_line(loc, lines)
        key = ".".join(str(part) for part in loc) or "(top level)"
        if error["type"] == "extra_forbidden":
            msg = "unknown key"
        messages.append(f"{where}{f':{line}' if line else ''}: {key}: {msg}")
    return "\n".join(messages)


def _is_union_tag(part: Any, data: dict) -> bool:
    # Pydantic puts the discriminator value ('imap', 'maildir') into the location; users never wrote it.
    return part in ("imap", "maildir", "function-after[_secret_source, ImapSourceConfig]")


def _nearest_line(loc: tuple, lines: dict) -> int | None:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None
