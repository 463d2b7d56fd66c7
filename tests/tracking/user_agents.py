"""Real user agents that fetch tracking pixels and links, with who they are: a person, or a machine and why.

Collected from mail clients and browsers as they send them, and from what deliverability vendors publish
(Validity/Return Path on the Gmail and Yahoo image proxies, SparkPost on Gmail's prefetch, Apple's Mail Privacy
Protection from 17.0.0.0/8, the user agents click-tracking services filter as bots). Each row:
(who, kind "o"/"c", user agent, client IP, seconds since sending, expected `is_machine` reason or None).
An hour after sending unless the row is about timing.
"""

from __future__ import annotations

HOUR = 3600.0
HOME_IP = "203.0.113.45"  # a person's connection
CLOUD_IP = "198.51.100.20"  # a data centre

CHROME_WIN = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
              "Safari/537.36")
EDGE_WIN = CHROME_WIN + " Edg/131.0.0.0"

UserAgentCase = tuple[str, str, str | None, str, float | None, str | None]

PEOPLE: list[UserAgentCase] = [
    ("Chrome on Windows", "c", CHROME_WIN, HOME_IP, HOUR, None),
    ("Edge on Windows (also the new Outlook for Windows)", "o", EDGE_WIN, HOME_IP, HOUR, None),
    ("Chrome on macOS", "c", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/131.0.0.0 Safari/537.36", HOME_IP, HOUR, None),
    ("Firefox on Windows", "c", "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
     HOME_IP, HOUR, None),
    ("Firefox on Linux", "o", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", HOME_IP,
     HOUR, None),
    ("Safari on macOS", "c", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like "
     "Gecko) Version/18.1 Safari/605.1.15", HOME_IP, HOUR, None),
    ("Safari on iPhone", "c", "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
     "like Gecko) Version/18.1 Mobile/15E148 Safari/604.1", HOME_IP, HOUR, None),
    ("Chrome on Android", "c", "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/131.0.0.0 Mobile Safari/537.36", HOME_IP, HOUR, None),
    ("Samsung Internet", "c", "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like "
     "Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36", HOME_IP, HOUR, None),
    ("a Cubot phone (its brand ends in 'bot')", "c", "Mozilla/5.0 (Linux; Android 12; CUBOT KINGKONG 7) "
     "AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.230 Mobile Safari/537.36", HOME_IP, HOUR, None),
    ("Apple Mail on macOS, privacy protection off", "o", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) "
     "AppleWebKit/605.1.15 (KHTML, like Gecko)", HOME_IP, HOUR, None),
    ("Mail on iPhone, privacy protection off", "o", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) "
     "AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148", HOME_IP, HOUR, None),
    ("Thunderbird on Windows", "o", "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 "
     "Thunderbird/128.5.0", HOME_IP, HOUR, None),
    ("Thunderbird on Linux", "o", "Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 Thunderbird/115.16.0",
     HOME_IP, HOUR, None),
    ("Outlook 2016+ for Windows loading images", "o", "Mozilla/4.0 (compatible; ms-office; MSOffice 16)", HOME_IP,
     HOUR, None),
    ("Outlook for Windows (Microsoft 365) loading images", "o", "Microsoft Office/16.0 (Windows NT 10.0; Microsoft "
     "Outlook 16.0.17928; Pro)", HOME_IP, HOUR, None),
    ("Gmail's image proxy (fetches when the recipient opens the mail)", "o", "Mozilla/5.0 (Windows NT 5.1; rv:11.0) "
     "Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)", "66.249.84.12", HOUR, None),
    ("Yahoo and AOL's image proxy (fetches on open)", "o", "YahooMailProxy; "
     "https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html", "98.137.10.4", HOUR, None),
    ("a person opening a minute after sending", "o", CHROME_WIN, HOME_IP, 60.0, None),
]

MACHINES: list[UserAgentCase] = [
    ("Apple Mail Privacy Protection (bare agent)", "o", "Mozilla/5.0", "104.28.40.5", 120.0,
     "apple-mail-privacy-protection"),
    ("Apple Mail Privacy Protection (Apple's network)", "o", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) "
     "AppleWebKit/605.1.15 (KHTML, like Gecko)", "17.58.101.12", 120.0, "apple-mail-privacy-protection"),
    ("Gmail's prefetch on arrival", "o", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like "
     "Gecko) Chrome/42.0.2311.135 Safari/537.36 Edge/12.246 Mozilla/5.0", "66.249.84.20", 30.0, "gmail-prefetch"),
    ("Barracuda link protection", "c", "Barracuda Sentinel (EE)", CLOUD_IP, HOUR, "scanner:barracuda"),
    ("Proofpoint URL Defense", "c", "Mozilla/5.0 (compatible; Proofpoint URL Defense)", CLOUD_IP, HOUR,
     "scanner:proofpoint"),
    ("Microsoft Defender Safe Links, posing as Edge, on delivery", "c", EDGE_WIN, "40.94.29.10", 4.0,
     "within-10s-of-sending"),
    ("Mimecast URL protection, posing as Chrome, on delivery", "c", CHROME_WIN, "91.220.42.10", 2.0,
     "within-10s-of-sending"),
    ("Outlook for Windows checking a link before opening it", "c", "Microsoft Office/16.0 (Windows NT 10.0; Microsoft "
     "Outlook 16.0.17928; Pro)", HOME_IP, HOUR, "scanner:microsoft-office"),
    ("Office's link existence check", "c", "Microsoft Office Existence Discovery", HOME_IP, HOUR,
     "scanner:microsoft-office"),
    ("Outlook's older agent on a link", "c", "Mozilla/4.0 (compatible; ms-office; MSOffice 16)", HOME_IP, HOUR,
     "scanner:microsoft-office"),
    ("Exchange fetching for a preview", "o", "Microsoft Exchange/15.20 (Windows NT 10.0; Win64; x64)", CLOUD_IP,
     HOUR, "scanner:microsoft exchange"),
    ("iOS background link preview", "c", "iOS/16.5.1 (20F75) dataaccessd/1.0", "17.58.1.1", HOUR,
     "scanner:dataaccessd"),
    ("a bare agent on a link", "c", "Mozilla/5.0", CLOUD_IP, HOUR, "scanner:bare-user-agent"),
    ("Gmail's image proxy on a link (it only fetches images)", "c", "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko "
     "Firefox/11.0 (via ggpht.com GoogleImageProxy)", "66.249.84.12", HOUR, "scanner:image-proxy"),
    ("Slack unfurling a forwarded link", "c", "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
     CLOUD_IP, HOUR, "scanner:bot"),
    ("Googlebot", "c", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", CLOUD_IP, HOUR,
     "scanner:bot"),
    ("Microsoft Teams / Skype preview", "c", "Mozilla/5.0 (Windows NT 6.1; WOW64) SkypeUriPreview Preview/0.5 "
     "skype-url-preview@microsoft.com", CLOUD_IP, HOUR, "scanner:preview"),
    ("WhatsApp preview", "c", "WhatsApp/2.23.20.0 A", CLOUD_IP, HOUR, "scanner:whatsapp"),
    ("Facebook preview", "c", "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)", CLOUD_IP,
     HOUR, "scanner:facebookexternalhit"),
    ("Headless Chrome", "c", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "HeadlessChrome/131.0.0.0 Safari/537.36", CLOUD_IP, HOUR, "scanner:headless"),
    ("a script", "c", "python-requests/2.32.3", CLOUD_IP, HOUR, "scanner:python-requests"),
    ("curl", "o", "curl/8.5.0", CLOUD_IP, HOUR, "scanner:curl"),
    ("Go", "c", "Go-http-client/1.1", CLOUD_IP, HOUR, "scanner:go-http-client"),
    ("Java", "c", "Apache-HttpClient/4.5.13 (Java/17.0.9)", CLOUD_IP, HOUR, "scanner:java"),
    ("no user agent", "o", None, CLOUD_IP, HOUR, "no-user-agent"),
    ("an empty user agent", "c", "", CLOUD_IP, HOUR, "no-user-agent"),
]
