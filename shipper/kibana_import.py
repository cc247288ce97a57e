"""`shipper setup --kibana URL`: import the saved objects through Kibana's saved objects API.

The objects are rendered from the rules at import time, the same NDJSON that
`shipper kibana generate` writes to kibana/shipper.ndjson, and overwrite older versions.
"""

from __future__ import annotations

import base64
import json

import urllib3

from .errors import AccessDenied, ServiceUnavailable, ShipperError
from .kibana import render, saved_objects


def import_saved_objects(url: str, user: str | None, password: str | None, *, ca_file: str | None = None) -> list[str]:
    """POST the objects (multipart `file`, `kbn-xsrf`, overwrite); lines saying what was created or updated."""
    body, content_type = urllib3.encode_multipart_formdata(
        {"file": ("shipper.ndjson", render(saved_objects()).encode(), "application/ndjson")})
    headers = {"kbn-xsrf": "shipper", "Content-Type": content_type}
    if user:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password or ''}".encode()).decode()
    http = urllib3.PoolManager(ca_certs=ca_file, retries=False, timeout=urllib3.Timeout(total=60))
    target = url.rstrip("/") + "/api/saved_objects/_import?overwrite=true"
    try:
        response = http.request("POST", target, body=body, headers=headers)
    except urllib3.exceptions.HTTPError as exc:
        raise ServiceUnavailable(f"cannot reach Kibana at {url}: {type(exc).__name__}") from exc
    try:
        answer = json.loads(response.data or b"{}")
    except json.JSONDecodeError:
        answer = {}
    if response.status == 401:
        raise AccessDenied(f"Kibana at {url} refused the credentials of {user or 'anonymous requests'} (401): check "
                           "--kibana-user (default elasticsearch.username) and KIBANA_PASSWORD")
    if response.status == 403:
        raise AccessDenied(f"Kibana at {url} refused {user or 'anonymous requests'} the import (403): the user needs "
                           "the Kibana privilege to manage saved objects (All on Saved Objects Management, or "
                           "the kibana_admin role)")
    if response.status != 200:
        raise ShipperError(f"Kibana at {url} refused the import ({response.status}): "
                           f"{answer.get('message') or response.data[:200]!r}")
    lines = []
    for result in answer.get("successResults", []):
        verb = "updated" if result.get("overwrite") else "created"
        lines.append(f"kibana: {verb} {result['type']} {result.get('meta', {}).get('title', result['id'])}")
    for error in answer.get("errors", []):
        lines.append(f"kibana: FAILED {error.get('type')} {error.get('id')}: {error.get('error', {}).get('type')}")
    lines.append(f"kibana: {answer.get('successCount', 0)} saved objects imported, {len(answer.get('errors', []))} failed")
    if answer.get("errors"):
        raise ShipperError("\n".join(lines))
    return lines
