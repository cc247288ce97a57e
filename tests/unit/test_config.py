from pathlib import Path

import pytest

from shipper.cli import main
from shipper.config import MASK, load_config, masked
from shipper.errors import ConfigError

EXAMPLE = Path(__file__).parents[2] / "shipper.example.yml"


def write(tmp_path, text):
    path = tmp_path / "shipper.yml"
    path.write_text(text)
    return path


def problems(excinfo):
    return [str(p) for p in excinfo.value.problems]


def test_example_config_is_valid_and_equals_the_defaults():
    assert load_config(EXAMPLE, env={}) == load_config(None, env={})


def test_every_problem_is_reported_with_file_and_line(tmp_path):
    path = write(tmp_path, "elasticsearch:\n  hostz: [http://x:9200]\n  verify_certs: maybe\nlog:\n  level: loud\n")
    with pytest.raises(ConfigError) as excinfo:
        load_config(path, env={})
    assert problems(excinfo) == [
        f"{path}:2: elasticsearch.hostz: unknown key (known here: api_key, ca_file, hosts, namespace, password, "
        "request_timeout, username, verify_certs)",
        f"{path}:3: elasticsearch.verify_certs: must be true or false, not a string 'maybe'",
        f"{path}:5: log.level: must be one of debug, info, warning, error, not 'loud'",
    ]


def test_bad_values_are_rejected(tmp_path):
    path = write(tmp_path, "elasticsearch:\n  hosts: [es:9200]\n  namespace: Prod-1\n  request_timeout: 0\n")
    with pytest.raises(ConfigError) as excinfo:
        load_config(path, env={})
    found = problems(excinfo)
    assert found[0] == f"{path}:2: elasticsearch.hosts: 'es:9200' is not an http:// or https:// URL"
    assert found[1].startswith(f"{path}:3: elasticsearch.namespace: 'Prod-1' must be lowercase")
    assert found[2] == f"{path}:4: elasticsearch.request_timeout: must be greater than 0"


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path, "log:\n  level: info\n  format: [json\n")
    with pytest.raises(ConfigError) as excinfo:
        load_config(path, env={})
    assert problems(excinfo)[0].startswith(f"{path}:4: not valid YAML")


def test_env_overrides_file_and_flags_override_env(tmp_path):
    path = write(tmp_path, "elasticsearch:\n  namespace: fromfile\n  request_timeout: 5\n")
    env = {"SHIPPER_ELASTICSEARCH__NAMESPACE": "fromenv", "SHIPPER_ELASTICSEARCH__HOSTS": "https://a:9200, https://b:9200"}
    config = load_config(path, env=env, overrides=["elasticsearch.namespace=fromflag"])
    assert config.elasticsearch.namespace == "fromflag"
    assert config.elasticsearch.hosts == ["https://a:9200", "https://b:9200"]
    assert config.elasticsearch.request_timeout == 5.0


def test_env_and_flag_problems_name_their_origin():
    with pytest.raises(ConfigError) as excinfo:
        load_config(None, env={"SHIPPER_LOG__COLOUR": "red"}, overrides=["log.level=7", "nonsense"])
    assert problems(excinfo) == [
        "--set nonsense: expected section.key=value",
        "env SHIPPER_LOG__COLOUR: log.colour: unknown key (known here: format, level)",
        "--set log.level: log.level: must be one of debug, info, warning, error, not 7",
    ]


def test_secrets_are_masked():
    config = load_config(None, env={"SHIPPER_ELASTICSEARCH__API_KEY": "c2VjcmV0", "SHIPPER_ELASTICSEARCH__USERNAME": "u"})
    shown = masked(config)
    assert shown["elasticsearch"]["api_key"] == MASK
    assert shown["elasticsearch"]["password"] is None
    assert shown["elasticsearch"]["username"] == "u"


def test_config_check_cli(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SHIPPER_ELASTICSEARCH__PASSWORD", "hunter2")
    assert main(["config", "check", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "namespace: default" in out and "hunter2" not in out and MASK in out

    bad = write(tmp_path, "elasticsearch:\n  hots: []\n  verify_certs: 3\n")
    assert main(["config", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:2: elasticsearch.hots: unknown key" in err
    assert f"{bad}:3: elasticsearch.verify_certs: must be true or false" in err
