"""One HTTP POST, as the Logstash sink and the webhook notifier send it.

It never retries: the caller decides (see `shipper/retry.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import urllib3


@dataclass(frozen=True)
class Answer:
    status: int  # 0: no answer at all
    reason: str
    retry_after: float | None = None  # seconds, when the server said

    @property
    def final(self) -> bool:
        """An answer that sending the same request again would not change."""
        return bool(self.status) and self.status != 429 and self.status < 500


def pool(ca_file: str | None = None, verify_certs: bool = True, timeout: float = 30.0) -> urllib3.PoolManager:
    kwargs: dict[str, Any] = {"timeout": urllib3.Timeout(total=timeout), "retries": False}
    if ca_file:
        kwargs["ca_certs"] = ca_file
    if not verify_certs:
        kwargs["cert_reqs"] = "CERT_NONE"
    return urllib3.PoolManager(**kwargs)


def post(http: urllib3.PoolManager, url: str, body: bytes, headers: dict[str, str]) -> Answer:
    try:
        response = http.request("POST", url, body=body, headers=headers)
    except urllib3.exceptions.HTTPError as exc:
        return Answer(0, type(exc).__name__)  # never str(exc): it may hold the URL, a secret
    retry_after = response.headers.get("Retry-After")
    return Answer(response.status, response.data[:300].decode("utf-8", "replace"),
                  float(retry_after) if retry_after and retry_after.isdigit() else None)
