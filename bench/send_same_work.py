"""The script a user would write instead of maild: render, PDF, compose, send; no database, no durability.

bench/send.py's same-work baseline. One plain Python process; for each mail of its input (a pickle written by
send.py, read before the timing): the same template files rendered with Jinja2 (subject, text, HTML), the same
one-page invoice PDF with fpdf2 (maild.templates.pdf.invoice_pdf: the very drawing code maild runs, so the PDF
costs both sides the same), the HTML's two links pointed at a signed click URL and an open pixel added (HMAC,
as a user would), the message composed with the standard library's EmailMessage (text + HTML alternative + the
PDF), and sent over K aiosmtplib connections (K coroutines each taking the next mail). Nothing is stored.
Prints one JSON line: {"mails": N, "seconds": S}.

    python bench/send_same_work.py INPUT.pickle PORT CONNECTIONS
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import pickle
import re
import secrets
import sys
import time
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid
from pathlib import Path
from typing import Any

import aiosmtplib
import jinja2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from maild.templates.pdf import invoice_pdf

HREF = re.compile(r'href="(https?://[^"]+)"')


def sign(secret: bytes, value: str) -> str:
    mac = hmac.new(secret, value.encode(), hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(value.encode() + b"." + mac).decode().rstrip("=")


def message(job: dict[str, Any], env: jinja2.Environment, setup: dict[str, Any]) -> EmailMessage:
    context = {"contact": job["contact"], "thirdparty": job["thirdparty"], "company": setup["company"],
               "invoice": job["invoice"]}
    subject = env.get_template("subject.txt").render(context).strip()
    text = env.get_template("body.txt").render(context)
    html = env.get_template("body.html").render(context)
    token = secrets.token_urlsafe(12)
    links = iter(range(100))
    html = HREF.sub(lambda m: f'href="{setup["base_url"]}/c/{sign(setup["secret"], f"c:{token}:{next(links)}")}"',
                    html)
    pixel = f'<img src="{setup["base_url"]}/o/{sign(setup["secret"], f"o:{token}")}" width="1" height="1" alt="">'
    html = html.replace("</body>", pixel + "</body>")
    pdf = invoice_pdf(job["invoice"], setup["company"], job["thirdparty"], "en")
    msg = EmailMessage()
    msg["From"] = formataddr((setup["sender_name"], setup["sender"]))
    msg["To"] = job["address"]
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(idstring=token, domain=setup["sender"].rpartition("@")[2])
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    msg.add_attachment(pdf, maintype="application", subtype="pdf", filename=f"{job['invoice']['ref']}.pdf")
    return msg


async def send_all(jobs: list[dict[str, Any]], setup: dict[str, Any], port: int, connections: int) -> int:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(setup["template_dir"]), autoescape=False)
    todo = iter(jobs)

    async def worker() -> int:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=30, use_tls=False, start_tls=False)
        await client.connect()
        sent = 0
        for job in todo:
            msg = message(job, env, setup)
            await client.send_message(msg, sender=setup["sender"], recipients=[job["address"]])
            sent += 1
        await client.quit()
        return sent

    return sum(await asyncio.gather(*(worker() for _ in range(connections))))


def main() -> None:
    path, port, connections = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    with open(path, "rb") as handle:
        setup, jobs = pickle.load(handle)
    message(jobs[0], jinja2.Environment(loader=jinja2.FileSystemLoader(setup["template_dir"])), setup)  # warm-up
    started = time.perf_counter()
    sent = asyncio.run(send_all(jobs, setup, port, connections))
    seconds = time.perf_counter() - started
    print(json.dumps({"mails": sent, "seconds": seconds}))


if __name__ == "__main__":
    main()
