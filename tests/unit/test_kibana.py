"""Kibana saved objects: the committed file is what the generator writes, every object is
well formed, and every field a column, sort or query names exists in the index template."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from shipper.cli import main
from shipper.detect.engine import BUILTIN_RULES
from shipper.es_setup import EVENT_FIELDS
from shipper.kibana import OUTPUT, render, saved_objects

COMMITTED = Path(__file__).resolve().parents[2] / "kibana" / OUTPUT
FIELD = re.compile(r"(?:^|[\s(])(?:_exists_:([A-Za-z_@][\w.@]*)|([A-Za-z_@][\w.@]*):)")
DEADLETTER_FIELDS = {"error.type", "error.message", "shipper.deadletter.index"}


def test_committed_file_is_what_generate_writes(tmp_path, capsys):
    assert COMMITTED.read_text() == render(saved_objects())
    assert main(["kibana", "generate", "--out", str(COMMITTED.parent), "--check"]) == 0
    (tmp_path / OUTPUT).write_text(COMMITTED.read_text().replace("Rule: ", "Rule:: ", 1))
    assert main(["kibana", "generate", "--out", str(tmp_path), "--check"]) == 1
    assert "run it and commit" in capsys.readouterr().err


def test_objects_are_well_formed_and_cover_every_rule():
    objects = [json.loads(line) for line in COMMITTED.read_text().splitlines()]
    by_id = {o["id"]: o for o in objects}
    assert len(by_id) == len(objects)
    searches = [o for o in objects if o["type"] == "search"]
    rule_files = list(BUILTIN_RULES.glob("*.yml"))
    assert sum(o["attributes"]["title"].startswith("Rule: ") for o in searches) == len(rule_files)
    for search in searches:
        source = json.loads(search["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
        assert source["query"]["language"] == "lucene" and source["query"]["query"]
        assert [r["id"] for r in search["references"]][0] in by_id  # its data view exists
    dashboard = next(o for o in objects if o["type"] == "dashboard")
    panels = json.loads(dashboard["attributes"]["panelsJSON"])
    assert len(panels) == len(dashboard["references"]) == 11
    assert all(r["id"] in by_id for r in dashboard["references"])


def test_every_field_named_is_mapped():
    named = set()
    for obj in saved_objects():
        if obj["type"] != "search":
            continue
        attributes = obj["attributes"]
        named |= set(attributes["columns"]) | {field for field, _ in attributes["sort"]}
        query = json.loads(attributes["kibanaSavedObjectMeta"]["searchSourceJSON"])["query"]["query"]
        named |= {exists or field for exists, field in FIELD.findall(query)}
    assert "process.name" in named and "file.path" in named  # the pattern finds fields at all
    assert sorted(named - set(EVENT_FIELDS) - DEADLETTER_FIELDS) == []


def test_import_speaks_the_saved_objects_api(tmp_path):
    """A local HTTP server in Kibana's place: the request must carry kbn-xsrf, overwrite=true
    and the NDJSON as the multipart `file`; the answer's results are reported back."""
    import email
    import email.policy
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from shipper.kibana_import import import_saved_objects

    seen = {}

    class Kibana(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            form = email.message_from_bytes(f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + body,
                                            policy=email.policy.HTTP)
            part = next(p for p in form.iter_parts() if p.get_param("name", header="content-disposition") == "file")
            seen.update(path=self.path, xsrf=self.headers.get("kbn-xsrf"), auth=self.headers.get("Authorization"),
                        file=part.get_payload(decode=True).decode())
            objects = [json.loads(line) for line in seen["file"].splitlines()]
            results = [{"type": o["type"], "id": o["id"], "meta": {"title": o["attributes"]["title"]},
                        **({"overwrite": True} if o["type"] == "index-pattern" else {})} for o in objects]
            answer = json.dumps({"success": True, "successCount": len(results), "successResults": results}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Kibana)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        lines = import_saved_objects(f"http://127.0.0.1:{server.server_port}", "elastic", "pw")
    finally:
        server.shutdown()
        server.server_close()
    assert seen["path"] == "/api/saved_objects/_import?overwrite=true" and seen["xsrf"]
    assert seen["auth"].startswith("Basic ") and seen["file"] == render(saved_objects())
    assert "kibana: updated index-pattern logs-shipper.events-*" in lines
    assert "kibana: created dashboard Shipper: container security" in lines
    assert lines[-1] == f"kibana: {len(saved_objects())} saved objects imported, 0 failed"


def test_sigma_regexes_become_lucene_regexes_with_the_same_meaning():
    from shipper.kibana import lucene_regex

    assert lucene_regex("-D") == ".*(-D).*"  # Sigma searches, Lucene matches the whole value
    assert lucene_regex("a|b") == ".*(a|b).*"
    assert lucene_regex("^curl$") == "(curl)"
    assert lucene_regex(r"(?:\s-O\s)") == ".*(([ \t\n\r\f\v]-O[ \t\n\r\f\v])).*"
    assert lucene_regex(r"[^-\s]x") == ".*([^- \t\n\r\f\v]x).*"
    assert lucene_regex('"a"@b') == '.*(\\"a\\"\\@b).*'
    assert lucene_regex(r"\d+\.\w") == ".*([0-9]+\\.[a-zA-Z0-9_]).*"


def test_kibana_refusing_the_credentials_is_access_denied():
    """A 401 from Kibana's import says which settings to check, with exit code 4 (no Kibana here: a stand-in)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from shipper.errors import AccessDenied
    from shipper.kibana_import import import_saved_objects

    class Refusing(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            answer = b'{"statusCode":401,"error":"Unauthorized","message":"Unauthorized"}'
            self.send_response(401)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(AccessDenied, match="--kibana-user") as refused:
            import_saved_objects(f"http://127.0.0.1:{server.server_port}", "auditor", "wrong")
    finally:
        server.shutdown()
        server.server_close()
    assert refused.value.exit_code == 4 and "\n" not in str(refused.value)
