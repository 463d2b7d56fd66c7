"""Reading a rule's `do:` list: one action per item, each checked against its parameters.

    send:    {template: NAME, to: EXPR, attach: [invoice_pdf], language: EXPR}
    move:    true | {folder: TEXT}
    tag:     NAME | [NAMES] | {add: NAME|[NAMES], remove: NAME|[NAMES], target: thirdparty|message}
    set:     {FIELD: EXPR, ...}                 FIELD in SETTABLE_FIELDS or thirdparty.fields.NAME
    assign:  EXPR | {owner: EXPR}
    task:    TEXT | {title: TEXT, owner: EXPR, due: DURATION, kind: task|agenda}
    note:    TEXT
    webhook: {url: https://..., secret: NAME, timeout: SECONDS}     NAME declared in rules.webhook_secrets
    stop:    true
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from maild.rules.expressions import Expression
from maild.rules.load_expressions import ExpressionReader, kind_label
from maild.rules.model import (
    ACTION_NAMES,
    DUNNING_PDF,
    SETTABLE_FIELDS,
    SETTABLE_PREFIXES,
    Action,
    ActionSpec,
    AssignAction,
    MoveAction,
    NoteAction,
    SendAction,
    SetAction,
    StopAction,
    TagAction,
    TaskAction,
    WebhookAction,
)
from maild.rules.yaml_nodes import (
    Errors,
    choice,
    describe,
    duration,
    is_scalar,
    is_string,
    mapping,
    string,
    strings,
    suggestion,
    value_of,
)
from maild.templates.loader import NAME_RE, template_names

# Documents `send.attach` can generate, and the context name each needs: the invoice, or the reminder letter
# (`dunning_pdf`: the level after the invoice's current one; `dunning_pdf:2`: that level).
GENERATED_ATTACHMENTS = {"invoice_pdf": "invoice", "dunning_pdf": "invoice"}


def generated_attachment(name: str) -> str | None:
    """The context name a generated attachment needs (`invoice`), or None for a stored file."""
    return GENERATED_ATTACHMENTS["dunning_pdf"] if DUNNING_PDF.match(name) else GENERATED_ATTACHMENTS.get(name)
SECRET_KEYS = ("password", "token", "key", "api_key")
SECRET_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # as the config's rules.webhook_secrets keys
DECLARE_SECRET = "declare it in the config (rules.webhook_secrets: {NAME: {env: VAR}} or {NAME: {file: PATH}})"


class ActionReader:
    """Turns the `do:` node of one rule into Action objects, recording every problem."""

    def __init__(self, errors: Errors, expressions: ExpressionReader, *, mail_events: bool | None,
                 templates_dir: Path | None, webhook_secrets: frozenset[str] | None = None) -> None:
        self.errors = errors
        self.exprs = expressions
        self.mail_events = mail_events  # True: every trigger type is mail.*; False: not; None: trigger invalid
        self.templates = template_names(templates_dir) if templates_dir is not None else None
        self.templates_dir = templates_dir
        self.webhook_secrets = webhook_secrets  # the names a webhook may sign with (None: not checked here)
        self._readers: dict[str, Callable[[yaml.Node, str], ActionSpec | None]] = {
            "send": self._send, "move": self._move, "tag": self._tag, "set": self._set, "assign": self._assign,
            "task": self._task, "note": self._note, "webhook": self._webhook, "stop": self._stop,
        }

    def actions(self, node: yaml.Node, key: str) -> tuple[Action, ...]:
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            self.errors.add(node, key, f"expected a list of actions ({', '.join(ACTION_NAMES)}); got "
                                       f"{'an empty list' if isinstance(node, yaml.SequenceNode) else describe(node)}")
            return ()
        out = []
        for index, item in enumerate(node.value):
            action = self._item(item, f"{key}[{index}]")
            if action is not None:
                out.append(action)
        return tuple(out)

    def _item(self, node: yaml.Node, key: str) -> Action | None:
        expected = f"one action per list item, such as `- send: {{...}}` (one of {', '.join(ACTION_NAMES)})"
        if not isinstance(node, yaml.MappingNode) or not node.value:
            self.errors.add(node, key, f"expected {expected}; got {describe(node)}")
            return None
        if len(node.value) > 1:
            names = ", ".join(str(k.value) for k, _ in node.value)
            self.errors.add(node, key, f"expected {expected}; got {len(node.value)} keys: {names} "
                                       f"(start each action with its own '-')")
            return None
        key_node, value_node = node.value[0]
        name = key_node.value if is_scalar(key_node) else None
        if name not in self._readers:
            self.errors.add(key_node, key, f"unknown action {describe(key_node)}"
                                           f"{suggestion(str(name), ACTION_NAMES)}; expected one of "
                                           f"{', '.join(ACTION_NAMES)}")
            return None
        spec = self._readers[name](value_node, f"{key}.{name}")
        return Action(name=name, spec=spec, position=self.errors.position(key_node)) if spec is not None else None

    # --- the actions ---------------------------------------------------------------------------------

    def _send(self, node: yaml.Node, key: str) -> SendAction | None:
        items = mapping(node, key, self.errors, allowed=("template", "to", "attach", "language"),
                        required=("template", "to"), expected="a mapping {template: NAME, to: EXPRESSION, ...}")
        if items is None or "template" not in items or "to" not in items:
            return None
        template = self._template(items["template"][1], f"{key}.template")
        to = self.exprs.expression(items["to"][1], f"{key}.to")
        attach: list[str] | None = []
        if "attach" in items:
            attach = self._attachments(items["attach"][1], f"{key}.attach")
        language = self.exprs.expression(items["language"][1], f"{key}.language") if "language" in items else None
        if template is None or to is None or attach is None or ("language" in items and language is None):
            return None
        return SendAction(template=template, to=to, attach=tuple(attach), language=language)

    def _template(self, node: yaml.Node, key: str) -> str | None:
        name = string(node, key, self.errors, "a template name (a folder of the templates directory)")
        if name is None:
            return None
        if not NAME_RE.match(name):
            self.errors.add(node, key, f"expected a template name of letters, digits, '.', '_' and '-'; got {name!r}")
            return None
        if self.templates is not None and name not in self.templates:
            found = ", ".join(self.templates) or "none"
            self.errors.add(node, key, f"no template {name!r} in {self.templates_dir}{suggestion(name, self.templates)}"
                                       f" (templates found: {found})")
            return None
        return name

    def _attachments(self, node: yaml.Node, key: str) -> list[str] | None:
        if not isinstance(node, yaml.SequenceNode):
            self.errors.add(node, key, f"expected a list such as [invoice_pdf]; got {describe(node)}")
            return None
        names = strings(node, key, self.errors, "an attachment name such as invoice_pdf") if node.value else []
        if names is None:
            return None
        ok = True
        for name, item in names:
            needs = generated_attachment(name)
            if needs is not None and not self.exprs.has(needs):
                ok = False
                self.errors.add(item, key, f"{name} needs an invoice, which {kind_label(str(self.exprs.kind))} "
                                           "do not have")
        return [name for name, _ in names] if ok else None

    def _move(self, node: yaml.Node, key: str) -> MoveAction | None:
        if self.mail_events is False:
            self.errors.add(node, key, "move files the event's mail: only for rules on mail.* events")
            return None
        if is_scalar(node) and value_of(node) is True:
            return MoveAction(folder=None)
        if not isinstance(node, yaml.MappingNode):
            self.errors.add(node, key, f"expected true (file as the filing config says) or {{folder: TEXT}}; "
                                       f"got {describe(node)}")
            return None
        items = mapping(node, key, self.errors, allowed=("folder",), required=("folder",))
        if not items or "folder" not in items:
            return None
        folder = self.exprs.text(items["folder"][1], f"{key}.folder")
        return MoveAction(folder=folder) if folder is not None else None

    def _tag(self, node: yaml.Node, key: str) -> TagAction | None:
        expected = "a tag name, a list of names, or {add: ..., remove: ..., target: thirdparty|message}"
        if not isinstance(node, yaml.MappingNode):
            names = strings(node, key, self.errors, expected)
            return TagAction(add=tuple(n for n, _ in names)) if names is not None else None
        items = mapping(node, key, self.errors, allowed=("add", "remove", "target"), expected=expected)
        if items is None:
            return None
        if "add" not in items and "remove" not in items:
            self.errors.add(node, key, "expected add: and/or remove: (tag names)")
            return None
        add = strings(items["add"][1], f"{key}.add", self.errors, "a tag name or a list of them") \
            if "add" in items else []
        remove = strings(items["remove"][1], f"{key}.remove", self.errors, "a tag name or a list of them") \
            if "remove" in items else []
        target = "thirdparty"
        if "target" in items:
            target_node = items["target"][1]
            target = choice(target_node, f"{key}.target", self.errors, ("thirdparty", "message")) or ""
            if target == "message" and not self.exprs.has("message"):
                self.errors.add(target_node, f"{key}.target", "target: message needs a mail: only for event rules")
                target = ""
        if add is None or remove is None or not target:
            return None
        return TagAction(add=tuple(n for n, _ in add), remove=tuple(n for n, _ in remove),
                         target="message" if target == "message" else "thirdparty")

    def _set(self, node: yaml.Node, key: str) -> SetAction | None:
        if not isinstance(node, yaml.MappingNode) or not node.value:
            self.errors.add(node, key, f"expected a mapping {{FIELD: EXPRESSION}} such as "
                                       f"{{invoice.dunning_level: 1}}; got {describe(node)}")
            return None
        fields = sorted(SETTABLE_FIELDS)
        ok = True
        assignments: list[tuple[str, Expression]] = []
        for field_node, value_node in node.value:
            field = str(field_node.value) if is_string(field_node) else ""
            where = f"{key}.{field}" if field else key
            if field in (name for name, _ in assignments):
                self.errors.add(field_node, where, "repeated field")
                ok = False
            elif field not in SETTABLE_FIELDS and not self._custom_field(field):
                self.errors.add(field_node, where, f"not a settable field{suggestion(field, fields)}; expected one "
                                                   f"of {', '.join(fields)}, {SETTABLE_PREFIXES[0]}NAME")
                ok = False
            elif not self.exprs.has(field.split(".")[0]):
                self.errors.add(field_node, where,
                                f"{kind_label(str(self.exprs.kind))} have no {field.split('.')[0]} to set")
                ok = False
            else:
                value = self.exprs.expression(value_node, where)
                ok = ok and value is not None
                if value is not None:
                    assignments.append((field, value))
        return SetAction(assignments=tuple(assignments)) if ok else None

    @staticmethod
    def _custom_field(name: str) -> bool:
        return any(name.startswith(prefix) and len(name) > len(prefix) for prefix in SETTABLE_PREFIXES)

    def _assign(self, node: yaml.Node, key: str) -> AssignAction | None:
        if isinstance(node, yaml.MappingNode):
            items = mapping(node, key, self.errors, allowed=("owner",), required=("owner",))
            if not items or "owner" not in items:
                return None
            node, key = items["owner"][1], f"{key}.owner"
        owner = self.exprs.expression(node, key)
        return AssignAction(owner=owner) if owner is not None else None

    def _task(self, node: yaml.Node, key: str) -> TaskAction | None:
        if not isinstance(node, yaml.MappingNode):
            title = self.exprs.text(node, key)
            return TaskAction(title=title) if title is not None else None
        items = mapping(node, key, self.errors, allowed=("title", "owner", "due", "kind"), required=("title",))
        if items is None or "title" not in items:
            return None
        title = self.exprs.text(items["title"][1], f"{key}.title")
        owner = self.exprs.expression(items["owner"][1], f"{key}.owner") if "owner" in items else None
        ok = title is not None and ("owner" not in items or owner is not None)
        due = None
        if "due" in items:
            due = duration(items["due"][1], f"{key}.due", self.errors)
            ok = ok and due is not None
        kind: str | None = "task"
        if "kind" in items:
            kind = choice(items["kind"][1], f"{key}.kind", self.errors, ("task", "agenda"))
            ok = ok and kind is not None
        if not ok or title is None:
            return None
        return TaskAction(title=title, owner=owner, due=due, kind="agenda" if kind == "agenda" else "task")

    def _note(self, node: yaml.Node, key: str) -> NoteAction | None:
        text = self.exprs.text(node, key)
        return NoteAction(text=text) if text is not None else None

    def _webhook(self, node: yaml.Node, key: str) -> WebhookAction | None:
        if isinstance(node, yaml.MappingNode):
            for key_node, _ in node.value:
                if is_scalar(key_node) and key_node.value in SECRET_KEYS:
                    self.errors.add(key_node, f"{key}.{key_node.value}",
                                    "a secret never goes into a rule file: name one the config declares "
                                    f"(secret: NAME); {DECLARE_SECRET}")
                    return None
                if is_scalar(key_node) and key_node.value in ("secret_env", "secret_file"):
                    self.errors.add(key_node, f"{key}.{key_node.value}",
                                    "a rule may only sign with a secret the config declares for webhooks: "
                                    f"{DECLARE_SECRET} and write secret: NAME here")
                    return None
        items = mapping(node, key, self.errors, allowed=("url", "secret", "timeout"), required=("url",),
                        expected="a mapping {url: https://..., secret: NAME}")
        if items is not None and "secret" not in items:
            self.errors.add(node, key, "missing secret: NAME, the secret the POST is signed with; "
                                       f"{DECLARE_SECRET}")
            return None
        if items is None or "url" not in items:
            return None
        url_node = items["url"][1]
        url = string(url_node, f"{key}.url", self.errors, "an https:// or http:// URL")
        if url is not None:
            parts = urlsplit(url)
            if parts.scheme not in ("https", "http") or not parts.hostname:
                self.errors.add(url_node, f"{key}.url", f"expected an https:// or http:// URL; got {url!r}")
                url = None
            elif parts.password is not None:
                self.errors.add(url_node, f"{key}.url", "a secret never goes into a rule file: no password in "
                                                         "the URL; sign with secret: NAME")
                url = None
        secret = self._secret_name(items["secret"][1], f"{key}.secret")
        timeout = 10.0
        ok = url is not None and secret is not None
        if "timeout" in items:
            timeout_node = items["timeout"][1]
            value = value_of(timeout_node) if is_scalar(timeout_node) else None
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 300:
                self.errors.add(timeout_node, f"{key}.timeout",
                                f"expected seconds between 0 and 300; got {describe(timeout_node)}")
                ok = False
            else:
                timeout = float(value)
        if not ok or url is None or secret is None:
            return None
        return WebhookAction(url=url, secret=secret, timeout=timeout)

    def _secret_name(self, node: yaml.Node, key: str) -> str | None:
        """The name of a webhook secret the config declares. What was written is never shown: it may be a secret
        someone pasted here."""
        value = value_of(node) if is_string(node) else None
        declared = sorted(self.webhook_secrets) if self.webhook_secrets is not None else None
        known = f"declared: {', '.join(declared)}" if declared else "the config declares none"
        if not isinstance(value, str) or not SECRET_NAME_RE.match(value):
            self.errors.add(node, key, "expected the name of a secret the config declares in rules.webhook_secrets "
                                       f"({known if declared is not None else DECLARE_SECRET})")
            return None
        if declared is not None and value not in declared:
            self.errors.add(node, key, f"not a secret the config declares in rules.webhook_secrets ({known}); "
                                       f"{DECLARE_SECRET}")
            return None
        return value

    def _stop(self, node: yaml.Node, key: str) -> StopAction | None:
        if is_scalar(node) and value_of(node) is True:
            return StopAction()
        self.errors.add(node, key, f"expected true; got {describe(node)}")
        return None
