"""The web app and JSON API: server-rendered pages (Jinja2, htmx) and /api/v1, over maild.services."""
