"""A web app over a real database with three users, and a client that logs in like a browser."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.testclient import TestClient

from maild.config import Config
from maild.services import tokens, users
from maild.services.actor import Actor
from maild.store.db import Database
from maild.web.app import create_app
from tests.helpers import config_at, write_config

PASSWORDS = {"ada": "admin password 1", "sam": "staff password 1", "vic": "viewer password 1"}
ROLES = {"ada": "admin", "sam": "staff", "vic": "viewer"}
ROOT = Actor("setup", "admin", "cli")
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Site:
    config: Config
    db: Database
    app: Starlette
    home: Path

    def client(self) -> TestClient:
        return TestClient(self.app, base_url="http://maild.test", follow_redirects=False)

    def logged_in(self, name: str) -> tuple[TestClient, str]:
        """A client with a session of user `name`, and the session's CSRF token."""
        client = self.client()
        login_form = client.get("/login")
        token = CSRF.search(login_form.text)
        assert token, login_form.text
        answer = client.post("/login", data={"username": name, "password": PASSWORDS[name], "csrf": token.group(1)})
        assert answer.status_code == 303, answer.text
        page = client.get("/customers")
        assert page.status_code == 200, page.text
        found = CSRF.search(page.text)
        assert found
        return client, found.group(1)

    def token(self, name: str) -> dict[str, str]:
        _id, value = tokens.create(self.db, ROOT, name, "tests")
        return {"Authorization": f"Bearer {value}"}


def make_site(tmp_path: Path, db: Database, **web: Any) -> Site:
    config_file = write_config(tmp_path, db.url, [])
    config = config_at(config_file)
    config = config.model_copy(update={"web": config.web.model_copy(update={"listen_port": 0, **web})})
    for name, password in PASSWORDS.items():
        users.add_user(db, ROOT, name, password, ROLES[name])
    return Site(config, db, create_app(config, db), tmp_path)


def follow(client: TestClient, response: httpx.Response) -> httpx.Response:
    while response.status_code in (302, 303):
        response = client.get(response.headers["location"])
    return response
