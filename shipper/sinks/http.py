"""One HTTP POST with the retry policy both HTTP sinks share.

429 and 5xx answers and transport errors are retried with jittered exponential
backoff (a `Retry-After` header wins); any other answer is returned to the caller.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import urllib3


@dataclass(frozen=True)
class Answer:
    status: int  # 0: no answer at all
    reason: str


def pool(ca_file: str | None = None, verify_certs: bool = True, timeout: float = 30.0) -> urllib3.PoolManager:
    kwargs = {"timeout": urllib3.Timeout(total=timeout), "retries": False}
    if ca_file:
        kwargs["ca_certs"] = ca_file
    if not verify_certs:
        kwargs["cert_reqs"] = "CERT_NONE"
    return urllib3.PoolManager(**kwargs)


def post(http: urllib3.PoolManager, url: str, body: bytes, headers: dict[str, str], *, max_retries: int,
         backoff: float = 0.5, backoff_max: float = 30.0, sleep=time.sleep) -> tuple[Answer, int]:
    """POST until a final answer; returns it and how many retries it took."""
    answer = Answer(0, "not sent")
    for attempt in range(max_retries + 1):
        retry_after = None
        try:
            response = http.request("POST", url, body=body, headers=headers)
            answer = Answer(response.status, response.data[:300].decode("utf-8", "replace"))
            retry_after = response.headers.get("Retry-After")
        except urllib3.exceptions.HTTPError as exc:
            answer = Answer(0, type(exc).__name__)  # never str(exc): it may hold the URL, a secret
        if answer.status and answer.status != 429 and answer.status < 500:
            return answer, attempt
        if attempt == max_retries:
            break
        wait = min(backoff_max, backoff * 2 ** attempt) * random.uniform(0.5, 1.0)
        if retry_after and retry_after.isdigit():
            wait = min(backoff_max, float(retry_after))
        sleep(wait)
    return answer, max_retries
