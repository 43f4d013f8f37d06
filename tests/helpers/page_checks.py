"""What every report page must satisfy whatever the data: the only script is q16's own
(``q16.report.decide.SCRIPT``), allowed by its hash, and nothing is loaded from elsewhere."""

from __future__ import annotations

import base64
import hashlib
import re

from q16.report import decide


def assert_only_q16_script(page: str) -> None:
    """No script, handler or remote resource from the data; the CSP allows only q16's."""
    scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", page, flags=re.S | re.I)
    assert scripts == [decide.SCRIPT] and page.lower().count("<script") == 1
    digest = base64.b64encode(hashlib.sha256(decide.SCRIPT.encode()).digest()).decode()
    csp = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', page)
    assert csp is not None and page.index(csp.group(0)) < page.index("<title>")
    assert f"script-src 'sha256-{digest}'" in csp.group(1) and "default-src 'none'" in csp.group(1)
    assert not re.search(r"<[^>]+\son[a-z]+\s*=", page, flags=re.I)  # no inline handlers
    links = re.findall(r"\s(?:src|href|action|srcset)\s*=\s*[\"']?([^\"'\s>]*)", page, re.I)
    assert all(link.startswith("data:") for link in links), links[:3]  # nothing fetched
