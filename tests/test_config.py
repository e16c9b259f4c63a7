"""Config: presets, the documented TOML shape, errors naming file/key/line, atomic writes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from providers.config import (
    Config,
    ConfigError,
    add_endpoint,
    load_config,
    parse_config,
    presets,
)
from providers.model_ref import ModelRef, endpoint_of
from providers.prices import model_info

DOCUMENTED = """\
# my endpoints
[endpoints.mylab]
base_url = "http://127.0.0.1:8000/v1"
api_key_env = "MYLAB_KEY"        # optional
models = ["qwen3-8b"]
[prices."mylab/qwen3-8b"]         # $ per 1M tokens
input = 0.10
output = 0.40
cached_input = 0.02
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "config.toml"
    p.write_text(text)
    return p


def test_documented_shape(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, DOCUMENTED))
    ep = cfg.endpoint("mylab")
    assert ep.base_url == "http://127.0.0.1:8000/v1"
    assert ep.api_key_env == "MYLAB_KEY"
    assert ep.models == ("qwen3-8b",)
    assert ep.is_loopback and not ep.key_required
    info = model_info("mylab/qwen3-8b", cfg)
    assert info.price is not None
    assert (info.price.input, info.price.output, info.price.cached_input) == (0.10, 0.40, 0.02)
    assert "openai" in cfg.endpoints  # presets stay


def test_all_documented_endpoint_keys(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    text = f"""
[timeouts]
connect = 5
[endpoints.azure]
base_url = "https://example.openai.azure.com/openai/deployments/gpt"
api_key_cmd = "pass show azure"
headers = {{ "api-key" = "{{api_key}}" }}
query = {{ "api-version" = "2024-10-21" }}
extra_body = {{ chat_template_kwargs = {{ enable_thinking = false }} }}
ca_bundle = "{bundle}"
proxy = "http://proxy.local:3128"
timeouts = {{ first_token = 600, idle = 30 }}
max_concurrency = 4
"""
    ep = load_config(write(tmp_path, text)).endpoint("azure")
    assert ep.api_key_cmd == "pass show azure"
    assert dict(ep.headers) == {"api-key": "{api_key}"}
    assert dict(ep.query) == {"api-version": "2024-10-21"}
    assert ep.extra_body == {"chat_template_kwargs": {"enable_thinking": False}}
    assert ep.verify == str(bundle)
    assert ep.proxy == "http://proxy.local:3128"
    assert (ep.timeouts.connect, ep.timeouts.first_token, ep.timeouts.idle) == (5, 600, 30)
    assert ep.max_concurrency == 4


def test_missing_file_gives_presets(tmp_path: Path) -> None:
    cfg = load_config(tmp_path / "nope.toml")
    assert set(cfg.endpoints) >= {
        "openai",
        "deepseek",
        "openrouter",
        "anthropic",
        "gemini",
        "groq",
        "together",
        "mistral",
        "ollama",
        "llamacpp",
        "vllm",
        "lmstudio",
    }


def test_tokenrace_config_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = write(tmp_path, DOCUMENTED)
    monkeypatch.setenv("TOKENRACE_CONFIG", str(p))
    assert "mylab" in load_config().endpoints


def test_openai_base_url_moves_only_the_openai_preset() -> None:
    eps = presets({"OPENAI_BASE_URL": "http://gateway.local/v1/"})
    assert eps["openai"].base_url == "http://gateway.local/v1"
    assert eps["deepseek"].base_url == "https://api.deepseek.com/v1"


def _error(tmp_path: Path, text: str) -> ConfigError:
    p = write(tmp_path, text)
    before = p.read_bytes()
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert p.read_bytes() == before  # never rewritten
    return info.value


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    err = _error(tmp_path, '[endpoints.a]\nbase_url = "http://x/v1"\nmodels = [\n"a",\n= 3\n')
    assert err.path == tmp_path / "config.toml"
    assert err.line == 5
    assert "TOML syntax error" in str(err) and "config.toml:5" in str(err)


def test_unknown_key_names_key_path_and_line(tmp_path: Path) -> None:
    err = _error(tmp_path, '# c\n[endpoints.a]\nbase_url = "http://x/v1"\nmodles = ["m"]\n')
    assert err.key_path == "endpoints.a.modles" and err.line == 4
    assert "did you mean 'models'" in str(err)


def test_wrong_type_names_key_path_and_line(tmp_path: Path) -> None:
    err = _error(tmp_path, '[endpoints.a]\nbase_url = "http://x/v1"\n\n\nmax_concurrency = "4"\n')
    assert err.key_path == "endpoints.a.max_concurrency" and err.line == 5
    assert "expected integer, got string" in str(err)


def test_wrong_type_in_prices(tmp_path: Path) -> None:
    err = _error(tmp_path, '[prices."a/b"]\ninput = "cheap"\noutput = 1\n')
    assert err.key_path == 'prices."a/b".input' and err.line == 2


def test_unknown_top_level_key(tmp_path: Path) -> None:
    err = _error(tmp_path, 'theme = "x"\ncolour = "red"\n')
    assert err.key_path == "colour" and err.line == 2


def test_bad_base_url(tmp_path: Path) -> None:
    err = _error(tmp_path, '[endpoints.a]\nbase_url = "localhost:8000"\n')
    assert err.key_path == "endpoints.a.base_url" and "http(s) URL" in str(err)


def test_reserved_name(tmp_path: Path) -> None:
    err = _error(tmp_path, '[endpoints.local]\nbase_url = "http://127.0.0.1:1/v1"\n')
    assert "reserved" in str(err)


@pytest.mark.skipif(os.geteuid() == 0, reason="platform: root reads any file")
def test_unreadable_file(tmp_path: Path) -> None:
    p = write(tmp_path, DOCUMENTED)
    p.chmod(0)
    try:
        with pytest.raises(ConfigError) as info:
            load_config(p)
        assert "cannot be read" in str(info.value)
    finally:
        p.chmod(stat.S_IRUSR | stat.S_IWUSR)


def test_unreadable_file_as_directory(tmp_path: Path) -> None:
    d = tmp_path / "config.toml"
    d.mkdir()
    with pytest.raises(ConfigError) as info:
        load_config(d)
    assert "is a directory" in str(info.value)


def test_not_utf8(tmp_path: Path) -> None:
    p = tmp_path / "config.toml"
    p.write_bytes(b'theme = "\xff"\n')
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert "not valid UTF-8" in str(info.value)


def test_add_endpoint_keeps_comments_and_is_atomic(tmp_path: Path) -> None:
    p = write(tmp_path, DOCUMENTED)
    add_endpoint("gw", "https://gw.example/v1", api_key_env="GW_KEY", models=["a", "b"], path=p)
    text = p.read_text()
    assert text.startswith("# my endpoints")
    assert "# $ per 1M tokens" in text
    cfg = load_config(p)
    assert cfg.endpoint("gw").models == ("a", "b")
    assert cfg.endpoint("mylab").models == ("qwen3-8b",)
    assert not [f for f in tmp_path.iterdir() if f.name.endswith(".tmp")]


def test_add_endpoint_refuses_a_broken_file(tmp_path: Path) -> None:
    p = write(tmp_path, "this is = = not toml\n")
    before = p.read_bytes()
    with pytest.raises(ConfigError):
        add_endpoint("gw", "https://gw.example/v1", path=p)
    assert p.read_bytes() == before


def test_add_endpoint_to_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "sub" / "config.toml"
    add_endpoint("gw", "https://gw.example/v1", path=p)
    assert load_config(p).endpoint("gw").base_url == "https://gw.example/v1"


def test_model_ref_splits_on_first_slash() -> None:
    ref = ModelRef.parse("openrouter/meta-llama/llama-4-maverick")
    assert (ref.endpoint, ref.model) == ("openrouter", "meta-llama/llama-4-maverick")
    with pytest.raises(ValueError, match="ENDPOINT/MODEL"):
        ModelRef.parse("gpt-4o")


@pytest.mark.parametrize("bad", ["gpt-4o", "/gpt-4o", "openai/", ""])
def test_model_ref_parse_rejects_what_names_no_model(bad: str) -> None:
    with pytest.raises(ValueError, match="ENDPOINT/MODEL"):
        ModelRef.parse(bad)


def test_model_ref_round_trips_a_model_id_with_slashes() -> None:
    ref = ModelRef.parse("together/meta-llama/Llama-3-8b")
    assert (ref.endpoint, ref.model) == ("together", "meta-llama/Llama-3-8b")
    assert str(ref) == "together/meta-llama/Llama-3-8b" and ModelRef.parse(str(ref)) == ref
    assert ModelRef.loose("openai") == ModelRef("openai", "")
    assert endpoint_of("groq/openai/gpt-oss-120b") == "groq"


def test_the_app_refuses_a_model_ref_without_a_model(
    isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``tokenrace -m openai/`` is refused before the app starts (it passed the old check)."""
    from tui.launch import run_tui

    assert run_tui(["openai/"]) == 2
    assert "expected ENDPOINT/MODEL" in capsys.readouterr().err


def test_unreadable_file_even_as_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Root reads a mode-000 file, so simulate the EACCES the user would get."""
    p = write(tmp_path, DOCUMENTED)
    import providers.config as config_module

    real = config_module._read_config_file

    def denied(path: Path) -> bytes:
        if path == p:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(config_module, "_read_config_file", denied)
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert str(p) in str(info.value) and "cannot be read: Permission denied" in str(info.value)


def test_a_write_that_fails_leaves_the_file_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = write(tmp_path, DOCUMENTED)
    before = p.read_bytes()

    def boom(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="No space left"):
        add_endpoint("gw", "https://gw.example/v1", path=p)
    assert p.read_bytes() == before
    assert not [f for f in tmp_path.iterdir() if f.name.endswith(".tmp")]


def test_endpoints_add_command_reports_a_broken_file(tmp_path: Path) -> None:
    from tests.support.cli import run_cli

    p = write(tmp_path, "[endpoints.a]\nbase_url = 3\n")
    before = p.read_bytes()
    r = run_cli(
        "endpoints", "add", "gw", "--base-url", "https://gw/v1", env={"TOKENRACE_CONFIG": str(p)}
    )
    assert r.returncode == 2
    assert f"{p}:2: endpoints.a.base_url: expected string, got integer" in r.stderr
    assert "Traceback" not in r.stderr
    assert p.read_bytes() == before


# --- issue 15.9: what was accepted at load and failed later with an internal error ---------

EP = '[endpoints.a]\nbase_url = "http://127.0.0.1:8000/v1"\n'


@pytest.mark.parametrize(
    ("text", "key_path", "words"),
    [
        ('[endpoints.a]\nbase_url = "http://127.0.0.1:99999/v1"\n', "endpoints.a.base_url", "port"),
        (EP + "timeouts = { connect = nan }\n", "endpoints.a.timeouts.connect", "finite"),
        (EP + "timeouts = { idle = inf }\n", "endpoints.a.timeouts.idle", "finite"),
        ("[timeouts]\nfirst_token = inf\n", "timeouts.first_token", "finite"),
        ("[engine]\nretries = 100000000000000000\n", "engine.retries", "at most"),
        ("[engine]\nmax_retry_wait = nan\n", "engine.max_retry_wait", "finite"),
        ("[engine]\nmax_event_bytes = 10000000000000\n", "engine.max_event_bytes", "at most"),
        (
            EP + 'headers = { "X-A" = "v\\r\\nX-Injected: 1" }\n',
            "endpoints.a.headers.X-A",
            "line",
        ),
        (EP + 'headers = { "X A" = "v" }\n', 'endpoints.a.headers."X A"', "header name"),
        ('[endpoints.""]\nbase_url = "http://127.0.0.1:1/v1"\n', 'endpoints.""', "empty"),
        (
            '[endpoints."a\\u001b]0;x"]\nbase_url = "http://127.0.0.1:1/v1"\n',
            "endpoints",
            "control",
        ),
        ('[prices."a/b"]\ninput = 1e308\noutput = 1\n', 'prices."a/b".input', "at most"),
        ('[prices."a/b"]\ninput = nan\noutput = 1\n', 'prices."a/b".input', "finite"),
        (EP + "max_concurrency = 100000000\n", "endpoints.a.max_concurrency", "at most"),
        (EP + 'proxy = "socks://:99999"\n', "endpoints.a.proxy", "URL"),
        # Lower bounds, declared with each key (TomlKey) like the upper ones.
        ("[engine]\nretries = -1\n", "engine.retries", "must not be negative"),
        ("[engine]\nmax_tokens = 0\n", "engine.max_tokens", "at least 1"),
        ("[engine]\nmax_reply_bytes = 0\n", "engine.max_reply_bytes", "at least 1"),
        (EP + "max_concurrency = 0\n", "endpoints.a.max_concurrency", "at least 1"),
        (EP + "timeouts = { idle = 0 }\n", "endpoints.a.timeouts.idle", "positive"),
        ('[prices."a/b"]\ncontext = -5\n', 'prices."a/b".context', "must not be negative"),
    ],
)
def test_unchecked_numbers_and_strings_fail_at_load(
    tmp_path: Path, text: str, key_path: str, words: str
) -> None:
    err = _error(tmp_path, text)
    assert err.key_path.startswith(key_path), (err.key_path, str(err))
    assert words in str(err), str(err)
    if words != "control":  # a name with an escape is written escaped: no line shows it
        assert err.line is not None, str(err)
    assert "\x1b" not in str(err)  # the message itself is inert


def test_config_that_is_not_a_file_fails_fast(tmp_path: Path) -> None:
    """/dev/zero grew to 10 GB; a FIFO hung for ever: neither is read."""
    import time

    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    t = time.monotonic()
    with pytest.raises(ConfigError, match="not a regular file"):
        load_config(fifo)
    with pytest.raises(ConfigError, match="not a regular file"):
        load_config(Path("/dev/zero"))
    big = tmp_path / "big.toml"
    big.write_bytes(b"# x\n" * (1 << 19))  # 2 MiB of comments
    with pytest.raises(ConfigError, match="MiB"):
        load_config(big)
    assert time.monotonic() - t < 5


def test_config_on_dev_zero_from_the_cli(tmp_path: Path) -> None:
    from tests.support.cli import run_cli

    r = run_cli("models", env={"TOKENRACE_CONFIG": "/dev/zero"}, timeout=20)
    assert r.returncode != 0
    assert "not a regular file" in r.stderr and "Traceback" not in r.stderr


def test_defaults_are_the_dataclasses_own() -> None:
    """An empty config file is the dataclasses' defaults: each key's default is declared once."""
    assert parse_config({}, environ={}) == Config(path=None, endpoints=presets({}))


def test_every_key_lands_in_its_field(tmp_path: Path) -> None:
    """Each [engine] key reaches the field it declares (names differ for some)."""
    config = load_config(
        write(
            tmp_path,
            "[engine]\nretries = 3\nmax_retry_wait = 7\nmax_event_bytes = 9\n"
            "max_reply_bytes = 11\nstall_threshold = 2\nkeyring_timeout = 5\nmax_tokens = 13\n"
            '[metrics]\nlog = false\nprometheus_file = "~/t.prom"\n',
        )
    )
    got = (
        config.retries,
        config.max_retry_wait_s,
        config.max_event_bytes,
        config.max_reply_bytes,
        config.stall_s,
        config.keyring_timeout_s,
        config.max_tokens,
    )
    assert got == (3, 7.0, 9, 11, 2.0, 5.0, 13)
    assert isinstance(config.max_retry_wait_s, float) and isinstance(config.stall_s, float)
    assert not config.metrics.log
    assert config.metrics.prometheus_file == Path("~/t.prom").expanduser()
