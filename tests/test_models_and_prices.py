"""`tokenrace models` and the built-in price table (issue: streaming core)."""

from __future__ import annotations

import json
import re
import socket
from datetime import date
from pathlib import Path

from providers.config import parse_config
from providers.prices import as_of, builtin_table, format_context, model_info
from tests.support.cli import run_cli
from tests.support.mock_server import MockServerProcess


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_price_table_covers_the_providers_and_has_a_date() -> None:
    table = builtin_table()
    assert date.fromisoformat(as_of())  # an "as of" date that parses
    refs = set(table["models"])
    providers = {r.split("/", 1)[0] for r in refs}
    assert {"openai", "deepseek", "anthropic", "gemini", "mistral", "groq"} <= providers
    assert "deepseek/deepseek-v4-flash" in refs
    for ref, row in table["models"].items():
        assert row["input"] >= 0 and row["output"] >= 0, ref
        assert row["output"] >= row["input"] or ref.startswith("groq/"), ref
        if "cached_input" in row:
            assert row["cached_input"] <= row["input"], ref
    info = model_info("deepseek/deepseek-v4-flash")
    assert info.price is not None
    assert (info.price.input, info.price.cached_input, info.price.output) == (0.30, 0.006, 1.20)
    assert info.context == 1_000_000
    assert info.price.source == f"built-in, as of {as_of()}"
    shown = [format_context(n) for n in (None, 8192, 128_000, 1_000_000, 1_047_576, 2_000_000)]
    assert shown == ["—", "8k", "128k", "1M", "1.05M", "2M"]


def test_config_prices_override_the_table_and_unknown_models_have_none() -> None:
    config = parse_config(
        {
            "endpoints": {"mylab": {"base_url": "http://127.0.0.1:8000/v1"}},
            "prices": {
                "deepseek/deepseek-v4-flash": {"input": 1.0, "output": 2.0},
                "mylab/qwen3-8b": {"input": 0.10, "output": 0.40, "cached_input": 0.02},
            },
        }
    )
    over = model_info("deepseek/deepseek-v4-flash", config)
    assert over.price is not None and (over.price.input, over.price.output) == (1.0, 2.0)
    assert over.context == 1_000_000  # context still from the table
    mine = model_info("mylab/qwen3-8b", config)
    assert mine.price is not None
    assert (mine.price.input, mine.price.output, mine.price.cached_input) == (0.10, 0.40, 0.02)
    assert mine.price.cost(1_000_000, 1_000_000, cached=500_000) == (0.5 * 0.10 + 0.5 * 0.02 + 0.40)
    unknown = model_info("mylab/never-heard-of-it", config)
    assert unknown.price is None  # unknown, never "free"


def test_models_lists_live_configured_and_priced_models_with_key_sources(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    dead = free_port()
    (isolated_home / "config.toml").write_text(
        f"""
[endpoints.mock]
base_url = "{mock_server.base_url}"
models = ["configured-only"]

[endpoints.keyed]
base_url = "{mock_server.base_url}"
api_key_env = "KEYED_TEST_KEY"

[endpoints.down]
base_url = "http://127.0.0.1:{dead}/v1"

[prices."mock/mock-fast"]
input = 0.10
output = 0.40
cached_input = 0.02
"""
    )
    env = {"KEYED_TEST_KEY": "sk-test-abcdefghijklmnop1234"}
    r = run_cli("models", "--json", env=env)
    assert r.returncode == 0, r.stderr
    doc = {e["endpoint"]: e for e in json.loads(r.stdout)}
    mock = doc["mock"]
    models = {m["model"]: m for m in mock["models"]}
    assert models["mock/mock-fast"]["source"] == "live", r.stdout  # GET /models answered
    assert models["mock/configured-only"]["source"] == "config"
    fast = models["mock/mock-fast"]
    assert (fast["input_per_m"], fast["output_per_m"], fast["cached_input_per_m"]) == (
        0.10,
        0.40,
        0.02,
    )
    assert models["mock/mock-slow"]["input_per_m"] is None  # no price: unknown, not zero
    assert mock["key"] == "no key needed" and mock["reachable"].endswith("models"), mock
    keyed = doc["keyed"]
    assert keyed["key_source"] == "env"
    assert "KEYED_TEST_KEY" in keyed["key"] and "abcdefghijklmnop" not in keyed["key"]
    assert "not running" in doc["down"]["reachable"], doc["down"]
    # The built-in presets are listed too, with where their key would come from.
    assert "deepseek" in doc and "DEEPSEEK_API_KEY" in doc["deepseek"]["key"]
    assert any(m["model"] == "deepseek/deepseek-v4-flash" for m in doc["deepseek"]["models"])

    text = run_cli("models", "mock", "--all", env=env)  # other tests add scenarios
    assert text.returncode == 0, text.stderr
    assert re.search(r"mock/mock-fast\s+\$0\.1 / \$0\.4.*\[live\]", text.stdout), text.stdout
    assert "as of " + as_of() in text.stdout
    assert "sk-test" not in r.stdout + text.stdout

    bad = run_cli("models", "nosuch")
    assert bad.returncode == 2 and "unknown endpoint 'nosuch'" in bad.stderr
