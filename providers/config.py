"""Endpoints and config: built-in presets merged with the user's TOML file (DESIGN §2).

The user owns config.toml. It is read with ``tomllib``; anything that does not fit the schema
raises ``ConfigError`` naming the file, the key path and the line, and the file is never
rewritten. The app writes it only when asked to add an endpoint (``add_endpoint``): atomically and
keeping the user's comments (tomlkit).
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import re
import stat
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from providers import paths, secrets
from providers.inert import inert_label
from providers.protocols import PROTOCOLS

_NUM = (int, float)
# Upper bounds: beyond them a value is a typo or an attack, and used as given it failed later
# with an internal error (a 1e17 retry loop, a 10 GB event buffer, a 300-digit cost).
_MAX_SECONDS = 7 * 86400.0
_MAX_PRICE = 100_000  # $ per 1M tokens


@dataclass(frozen=True, slots=True)
class TomlKey:
    """How a field is written in config.toml: its TOML types, its bounds, its name there."""

    types: tuple[type, ...]
    name: str | None = None  # the TOML key, when it is not the field's name
    table: str = ""  # for Config's own fields: "" (top level) or "engine"
    low: float | None = None  # the smallest value allowed
    high: float | None = None  # the largest value allowed
    low_message: str = ""  # what to say below ``low`` (default: "must not be negative"…)
    convert: Callable[[Any], Any] | None = None  # TOML value → field value


def toml_key(
    types: tuple[type, ...], default: Any, *, default_factory: Any = None, **spec: Any
) -> Any:
    """A dataclass field that is also a key of config.toml (``TomlKey`` says how)."""
    meta = {"toml": TomlKey(types, **spec)}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


DEFAULT_CONNECT_S = 10.0
DEFAULT_FIRST_TOKEN_S = 300.0
DEFAULT_IDLE_S = 60.0
DEFAULT_MAX_REPLY_BYTES = 2_000_000  # [engine] max_reply_bytes


# A timeout: more than zero seconds, at most a week.
_SECONDS: dict[str, Any] = {
    "low": 1e-9,
    "low_message": "must be a positive number of seconds",
    "high": _MAX_SECONDS,
    "convert": float,
}


class ConfigError(Exception):
    """The config file cannot be used; the message names file, key path and line."""

    def __init__(
        self, path: Path | None, message: str, key_path: str = "", line: int | None = None
    ):
        self.path = path
        self.key_path = key_path
        self.line = line
        self.detail = message
        where = str(path) if path else "config"
        if line is not None:
            where += f":{line}"
        key = f" {key_path}:" if key_path else ""
        super().__init__(f"{where}:{key} {message}")


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Per-endpoint timeouts in seconds (DESIGN §5)."""

    connect: float = toml_key(_NUM, DEFAULT_CONNECT_S, **_SECONDS)
    first_token: float = toml_key(_NUM, DEFAULT_FIRST_TOKEN_S, **_SECONDS)
    idle: float = toml_key(_NUM, DEFAULT_IDLE_S, **_SECONDS)


DEFAULT_TIMEOUTS = Timeouts()


def _path(value: str) -> Path | None:
    return Path(value).expanduser() if value else None


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One OpenAI-compatible base URL and how to authenticate to it."""

    name: str
    base_url: str = toml_key((str,), "")
    api_key_env: str | None = toml_key((str,), None)
    api_key_cmd: str | None = toml_key((str,), None)
    models: tuple[str, ...] = toml_key((list,), ())
    headers: Mapping[str, str] = toml_key((dict,), None, default_factory=dict)
    query: Mapping[str, str] = toml_key((dict,), None, default_factory=dict)
    extra_body: Mapping[str, Any] = toml_key((dict,), None, default_factory=dict)
    verify: bool | str = toml_key((bool,), True)
    proxy: str | None = toml_key((str,), None)
    timeouts: Timeouts = toml_key((dict,), DEFAULT_TIMEOUTS)  # noqa: RUF009 - a field()
    max_concurrency: int | None = toml_key((int,), None, low=1, high=1024)
    key_required: bool = False
    preset: bool = False
    description: str = toml_key((str,), "")
    # The local endpoint: tokenrace runs the server itself (providers.local); ``gguf`` is the
    # model file it serves (None: the bundled model).
    managed: bool = False
    gguf: str | None = None
    # The wire protocol it speaks (providers.protocols): chat, responses, anthropic or gemini.
    protocol: str = toml_key((str,), "chat")
    # Ask the model to stream its thinking (off unless configured).
    thinking: bool = toml_key((bool,), False)

    @property
    def is_loopback(self) -> bool:
        """True when the base URL points at this machine (a refused connection means 'down')."""
        return is_loopback_host(urlsplit(self.base_url).hostname or "")


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` names this machine."""
    if host in ("localhost", "localhost.") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class PriceOverride:
    """A price and/or context length from config, $ per 1M tokens."""

    input: float | None = toml_key(_NUM, None, low=0, high=_MAX_PRICE, convert=float)
    output: float | None = toml_key(_NUM, None, low=0, high=_MAX_PRICE, convert=float)
    cached_input: float | None = toml_key(_NUM, None, low=0, high=_MAX_PRICE, convert=float)
    context: int | None = toml_key((int,), None, low=0, high=1 << 30)


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """Where completed runs are logged for dashboards (issue: metrics log, Prometheus file)."""

    log: bool = toml_key((bool,), True)
    prometheus_file: Path | None = toml_key((str,), None, convert=_path)  # noqa: RUF009 - a field()


@dataclass(frozen=True, slots=True)
class Role:
    """A named system prompt and settings (``[roles.NAME]``), chosen with ``/role NAME``.

    "Preset" already names a built-in endpoint, hence "role" (aichat's word for the same)."""

    name: str
    system: str | None = toml_key((str,), None)
    temperature: float | None = toml_key(_NUM, None, low=0, high=2, convert=float)
    max_tokens: int | None = toml_key((int,), None, low=1, high=1 << 24)
    json_mode: bool = toml_key((bool,), False, name="json")
    # A JSON Schema the reply must follow: inline, or read from ``schema_file`` (relative to
    # the config file) when the role is loaded; either way held as the parsed schema.
    schema: Mapping[str, Any] | None = toml_key((dict,), None)
    description: str | None = toml_key((str,), None)


@dataclass(frozen=True, slots=True)
class Config:
    """Everything read from config.toml, with presets merged in."""

    path: Path | None
    endpoints: Mapping[str, Endpoint]
    prices: Mapping[str, PriceOverride] = field(default_factory=dict)
    keys: Mapping[str, str] = field(default_factory=dict)
    metrics: MetricsSettings = MetricsSettings()
    default_model: str | None = toml_key((str,), None)
    retries: int = toml_key((int,), 2, table="engine", low=0, high=10)
    max_retry_wait_s: float = toml_key(
        _NUM, 300.0, name="max_retry_wait", table="engine", low=0, high=86400, convert=float
    )
    max_event_bytes: int = toml_key((int,), 1 << 20, table="engine", low=0, high=1 << 30)
    # What one reply may hold (text, reasoning, tool calls; UTF-8 bytes): a 10,000-token reply
    # is about 50 KB. A server that never stops must not grow the app without bound.
    max_reply_bytes: int = toml_key(
        (int,), DEFAULT_MAX_REPLY_BYTES, table="engine", low=1, high=1 << 31
    )
    stall_s: float = toml_key(
        _NUM, 1.0, name="stall_threshold", table="engine", low=0, high=3600, convert=float
    )
    keyring_timeout_s: float = toml_key(
        _NUM, 3.0, name="keyring_timeout", table="engine", low=0, high=600, convert=float
    )
    theme: str | None = toml_key((str,), None)
    # max_tokens for protocols that require one (Anthropic) when the user set none; one value
    # for every pane of a race, so the comparison stays fair.
    max_tokens: int = toml_key((int,), 4096, table="engine", low=1)
    roles: Mapping[str, Role] = field(default_factory=dict)

    def endpoint(self, name: str) -> Endpoint:
        """The endpoint called ``name``; ``KeyError`` with the known names otherwise."""
        try:
            return self.endpoints[name]
        except KeyError:
            known = ", ".join(sorted(self.endpoints))
            raise KeyError(f"unknown endpoint {name!r} (known: {known})") from None


# --- presets ---------------------------------------------------------------------------------

_CLOUD: tuple[tuple[str, str, str, str], ...] = (
    ("openai", "https://api.openai.com/v1", "OPENAI_API_KEY", "OpenAI"),
    ("deepseek", "https://api.deepseek.com/v1", "DEEPSEEK_API_KEY", "DeepSeek"),
    ("openrouter", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY", "OpenRouter"),
    ("anthropic", "https://api.anthropic.com/v1", "ANTHROPIC_API_KEY", "Anthropic (Messages)"),
    (
        "anthropic-openai",
        "https://api.anthropic.com/v1",
        "ANTHROPIC_API_KEY",
        "Anthropic (OpenAI-compatible)",
    ),
    (
        "gemini",
        "https://generativelanguage.googleapis.com/v1beta",
        "GEMINI_API_KEY",
        "Google Gemini (native)",
    ),
    (
        "gemini-openai",
        "https://generativelanguage.googleapis.com/v1beta/openai",
        "GEMINI_API_KEY",
        "Google Gemini (OpenAI-compatible)",
    ),
    ("groq", "https://api.groq.com/openai/v1", "GROQ_API_KEY", "Groq"),
    ("together", "https://api.together.xyz/v1", "TOGETHER_API_KEY", "Together AI"),
    ("mistral", "https://api.mistral.ai/v1", "MISTRAL_API_KEY", "Mistral"),
)
# Presets that speak a native protocol; every other endpoint speaks chat completions.
_NATIVE: dict[str, str] = {"anthropic": "anthropic", "gemini": "gemini"}

_LOCAL: tuple[tuple[str, str, str | None, str], ...] = (
    ("ollama", "http://127.0.0.1:11434/v1", None, "Ollama on this machine"),
    ("llamacpp", "http://127.0.0.1:8080/v1", None, "llama.cpp llama-server on this machine"),
    ("vllm", "http://127.0.0.1:8000/v1", "VLLM_API_KEY", "vLLM on this machine"),
    ("lmstudio", "http://127.0.0.1:1234/v1", None, "LM Studio on this machine"),
)

RESERVED_NAMES = frozenset({"local"})


def presets(environ: Mapping[str, str] | None = None) -> dict[str, Endpoint]:
    """The built-in endpoints; ``OPENAI_BASE_URL`` moves the openai preset and nothing else."""
    env = os.environ if environ is None else environ
    out: dict[str, Endpoint] = {}
    for name, default_url, key_env, desc in _CLOUD:
        url = default_url
        if name == "openai" and env.get("OPENAI_BASE_URL"):
            url = env["OPENAI_BASE_URL"].rstrip("/")
        out[name] = Endpoint(
            name=name,
            base_url=url,
            api_key_env=key_env,
            key_required=True,
            preset=True,
            description=desc,
            protocol=_NATIVE.get(name, "chat"),
        )
    for name, local_url, local_env, desc in _LOCAL:
        out[name] = Endpoint(
            name=name,
            base_url=local_url,
            api_key_env=local_env,
            preset=True,
            description=desc,
        )
    return out


# --- schema ----------------------------------------------------------------------------------

Schema = Mapping[str, tuple[str, TomlKey]]  # TOML key → (field name, how it is written)


def _schema(cls: type, table: str | None = None) -> dict[str, tuple[str, TomlKey]]:
    """The TOML keys of ``cls``'s fields (of one ``table`` of Config's)."""
    out: dict[str, tuple[str, TomlKey]] = {}
    for f in fields(cls):
        spec = f.metadata.get("toml")
        if spec is not None and (table is None or spec.table == table):
            out[spec.name or f.name] = (f.name, spec)
    return out


_TABLE = TomlKey((dict,))
_TIMEOUT_KEYS = _schema(Timeouts)
_ENDPOINT_KEYS = {**_schema(Endpoint), "ca_bundle": ("", TomlKey((str,)))}
_PRICE_KEYS = _schema(PriceOverride)
_METRICS_KEYS = _schema(MetricsSettings)
_ENGINE_KEYS = _schema(Config, "engine")
_ROLE_KEYS = {**_schema(Role), "schema_file": ("", TomlKey((str,)))}
_TOP_KEYS = {
    **_schema(Config, ""),
    **{
        name: ("", _TABLE)
        for name in ("endpoints", "prices", "keys", "timeouts", "metrics", "roles")
    },
    "engine": ("", _TABLE),
}


def _values(table: Mapping[str, Any], schema: Schema) -> dict[str, Any]:
    """The fields set by a checked ``table``, converted: ready for the dataclass or replace."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        name, spec = schema[key]
        if name:
            out[name] = spec.convert(value) if spec.convert is not None else value
    return out


MAX_CONFIG_BYTES = 1 << 20
# RFC 9110 token characters: anything else in a header name breaks the request line.
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _type_name(types: tuple[type, ...]) -> str:
    names = {
        int: "integer",
        float: "number",
        str: "string",
        bool: "true/false",
        list: "array",
        dict: "table",
    }
    if types == _NUM:
        return "number"
    return " or ".join(names.get(t, t.__name__) for t in types)


def _value_type(value: object) -> str:
    return {
        bool: "true/false",
        int: "integer",
        float: "number",
        str: "string",
        list: "array",
        dict: "table",
    }.get(type(value), type(value).__name__)


class _Checker:
    """Validates parsed TOML against the schema, pointing at lines in the source."""

    def __init__(self, path: Path | None, source: str):
        self.path = path
        self.lines = source.splitlines()

    def line_of(self, key_path: list[str]) -> int | None:
        """Best-effort line number of ``key_path`` (a table header or ``key =`` line)."""
        table: list[str] = []
        for no, raw in enumerate(self.lines, start=1):
            line = raw.strip()
            if line.startswith("["):
                header = line.strip("[]").strip()
                table = _split_dotted(header)
                if table == key_path:
                    return no
                continue
            if "=" not in line or line.startswith("#"):
                continue
            key = _split_dotted(line.split("=", 1)[0].strip())
            full = table + key
            if full == key_path or full[: len(key_path)] == key_path:
                return no
        # An inline table: report the line of its parent key.
        if len(key_path) > 1:
            return self.line_of(key_path[:-1])
        return None

    def fail(self, key_path: list[str], message: str) -> ConfigError:
        return ConfigError(
            self.path, message, ".".join(_quote(k) for k in key_path), self.line_of(key_path)
        )

    def check_table(self, data: Mapping[str, Any], schema: Schema, where: list[str]) -> None:
        for key, value in data.items():
            kp = [*where, key]
            if key not in schema:
                hint = _did_you_mean(key, schema)
                raise self.fail(kp, f"unknown key{hint}")
            spec = schema[key][1]
            types = spec.types
            ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
            if not ok:
                raise self.fail(
                    kp, f"expected {_type_name(types)}, got {_value_type(value)} ({value!r})"
                )
            if isinstance(value, float) and not math.isfinite(value):
                raise self.fail(kp, f"must be a finite number, got {value!r}")
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if spec.high is not None and value > spec.high:
                raise self.fail(kp, f"must be at most {spec.high:g}, got {value:g}")
            if spec.low is not None and value < spec.low:
                default = (
                    "must not be negative" if spec.low == 0 else f"must be at least {spec.low:g}"
                )
                raise self.fail(kp, spec.low_message or default)


def _quote(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else f'"{key}"'


def _split_dotted(text: str) -> list[str]:
    parts: list[str] = []
    cur = ""
    quote: str | None = None
    for ch in text:
        if quote:
            if ch == quote:
                quote = None
            else:
                cur += ch
        elif ch in "\"'":
            quote = ch
        elif ch == ".":
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    parts.append(cur.strip())
    return parts


def _did_you_mean(key: str, schema: Mapping[str, Any]) -> str:
    import difflib

    close = difflib.get_close_matches(key, list(schema), n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (allowed: {', '.join(schema)})"


# --- loading ---------------------------------------------------------------------------------


def load_config(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read config.toml (or defaults when it does not exist) and merge it with the presets."""
    path = path if path is not None else paths.config_path()
    env = os.environ if environ is None else environ
    try:
        raw_bytes = _read_config_file(path)
    except FileNotFoundError:
        return Config(path=path, endpoints=presets(env))
    except IsADirectoryError:
        raise ConfigError(path, "is a directory, not a TOML file") from None
    except PermissionError as exc:
        raise ConfigError(path, f"cannot be read: {exc.strerror or 'permission denied'}") from None
    except OSError as exc:
        raise ConfigError(path, f"cannot be read: {exc.strerror or exc}") from None
    try:
        source = raw_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(path, f"is not valid UTF-8 (byte {exc.start})") from None
    try:
        data = tomllib.loads(source)
    except tomllib.TOMLDecodeError as exc:
        line = _toml_error_line(str(exc))
        msg = str(exc).split(" (at line")[0]
        raise ConfigError(path, f"TOML syntax error: {msg}", line=line) from None
    return parse_config(data, path=path, source=source, environ=env)


def _read_config_file(path: Path) -> bytes:
    """The file's bytes, refusing what is not a regular file or is too big to be a config:
    ``/dev/zero`` grew without end, and opening a FIFO blocked for ever."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(path)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(
                path, "is not a regular file (a device, FIFO or socket): give a TOML file"
            )
        limit = MAX_CONFIG_BYTES
        if info.st_size > limit:
            raise ConfigError(
                path, f"is {info.st_size / (1 << 20):.1f} MiB; a config file is at most 1 MiB"
            )
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise ConfigError(path, "grew past 1 MiB while being read; a config file is smaller")
        return b"".join(chunks)
    finally:
        os.close(fd)


def _toml_error_line(message: str) -> int | None:
    import re

    m = re.search(r"at line (\d+)", message)
    return int(m.group(1)) if m else None


def parse_config(
    data: Mapping[str, Any],
    *,
    path: Path | None = None,
    source: str = "",
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Validate parsed TOML and build a ``Config``."""
    env = os.environ if environ is None else environ
    chk = _Checker(path, source)
    chk.check_table(data, _TOP_KEYS, [])

    default_timeouts = Timeouts()
    if "timeouts" in data:
        default_timeouts = _timeouts(data["timeouts"], Timeouts(), chk, ["timeouts"])

    endpoints = {name: replace(ep, timeouts=default_timeouts) for name, ep in presets(env).items()}
    for name, table in data.get("endpoints", {}).items():
        where = ["endpoints", name]
        if not isinstance(table, dict):
            raise chk.fail(where, f"expected table, got {_value_type(table)}")
        if not name:
            raise chk.fail(where, "endpoint names cannot be empty")
        if _CONTROL.search(name) or "\t" in name or name != name.strip():
            raise chk.fail(
                ["endpoints"],
                f"the endpoint name {inert_label(name)!r} holds control characters or spaces",
            )
        if name in RESERVED_NAMES:
            raise chk.fail(where, f"the name {name!r} is reserved for the bundled local model")
        if "/" in name:
            raise chk.fail(where, "endpoint names cannot contain '/'")
        chk.check_table(table, _ENDPOINT_KEYS, where)
        endpoints[name] = _endpoint(name, table, endpoints.get(name), default_timeouts, chk, where)

    prices: dict[str, PriceOverride] = {}
    for ref, table in data.get("prices", {}).items():
        where = ["prices", ref]
        if not isinstance(table, dict):
            raise chk.fail(where, f"expected table, got {_value_type(table)}")
        if "/" not in ref:
            raise chk.fail(where, "price keys are 'endpoint/model'")
        chk.check_table(table, _PRICE_KEYS, where)
        prices[ref] = PriceOverride(**_values(table, _PRICE_KEYS))

    keys: dict[str, str] = {}
    for action, key in data.get("keys", {}).items():
        if not isinstance(key, str):
            raise chk.fail(["keys", action], f"expected string, got {_value_type(key)}")
        keys[action] = key

    metrics = MetricsSettings()
    if "metrics" in data:
        chk.check_table(data["metrics"], _METRICS_KEYS, ["metrics"])
        metrics = MetricsSettings(**_values(data["metrics"], _METRICS_KEYS))

    engine = data.get("engine", {})
    chk.check_table(engine, _ENGINE_KEYS, ["engine"])

    roles = {
        name: _role(name, table, chk, ["roles", name], path)
        for name, table in data.get("roles", {}).items()
    }

    default_model = data.get("default_model")
    if default_model is not None and "/" not in default_model:
        raise chk.fail(["default_model"], "expected 'endpoint/model'")

    for ep in endpoints.values():
        # Credentials in a URL's userinfo are redacted wherever keys are (issue 15.8).
        for url in (ep.base_url, ep.proxy or ""):
            for value in secrets.userinfo_secrets(url):
                secrets.register(value)

    return Config(
        path=path,
        endpoints=endpoints,
        prices=prices,
        keys=keys,
        metrics=metrics,
        **_values({k: v for k, v in data.items() if _TOP_KEYS[k][0]}, _TOP_KEYS),
        **_values(engine, _ENGINE_KEYS),
        roles=roles,
    )


def _role(name: str, table: Any, chk: _Checker, where: list[str], path: Path | None) -> Role:
    """One ``[roles.NAME]`` table, checked; a schema file is read now, so a broken one is
    reported with the config's line, not when the role is first used."""
    if not isinstance(table, dict):
        raise chk.fail(where, f"expected table, got {_value_type(table)}")
    if not name or _CONTROL.search(name) or any(c.isspace() for c in name):
        raise chk.fail(["roles"], f"the role name {inert_label(name)!r} holds spaces or controls")
    chk.check_table(table, _ROLE_KEYS, where)
    if "schema" in table and "schema_file" in table:
        raise chk.fail([*where, "schema_file"], "give schema or schema_file, not both")
    schema: Mapping[str, Any] | None = table.get("schema")
    if "schema_file" in table:
        file = Path(table["schema_file"]).expanduser()
        if not file.is_absolute() and path is not None:
            file = path.parent / file
        try:
            loaded = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            message = f"cannot read a JSON Schema from {file}: {exc}"
            raise chk.fail([*where, "schema_file"], message) from None
        if not isinstance(loaded, dict):
            raise chk.fail([*where, "schema_file"], f"{file} holds no JSON object")
        schema = loaded
    return Role(name=name, **{**_values(table, _ROLE_KEYS), "schema": schema})


def _timeouts(
    table: Mapping[str, Any], base: Timeouts, chk: _Checker, where: list[str]
) -> Timeouts:
    chk.check_table(table, _TIMEOUT_KEYS, where)
    return replace(base, **_values(table, _TIMEOUT_KEYS))


def _string_map(value: Mapping[str, Any], chk: _Checker, where: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(v, str):
            raise chk.fail([*where, k], f"expected string, got {_value_type(v)}")
        out[k] = v
    return out


def _check_headers(headers: Mapping[str, str], chk: _Checker, where: list[str]) -> None:
    """A header is one line: a CR or LF in it would start another header (or the body)."""
    for k, v in headers.items():
        if not _HEADER_NAME.fullmatch(k):
            raise chk.fail(
                [*where, k], "not a valid header name (letters, digits and !#$%&'*+-.^_`|~)"
            )
        if _CONTROL.search(v):
            raise chk.fail(
                [*where, k],
                "a header value must be one line with no line break or control character",
            )


def _check_url(url: str, schemes: tuple[str, ...], chk: _Checker, where: list[str]) -> None:
    shown = secrets.redact_url(url)
    if _CONTROL.search(url) or " " in url:
        raise chk.fail(where, f"the URL holds spaces or control characters: {inert_label(shown)!r}")
    parts = urlsplit(url)
    if parts.scheme not in schemes or not parts.hostname:
        kinds = "http(s)" if schemes == ("http", "https") else "/".join(schemes)
        raise chk.fail(where, f"expected an {kinds} URL, got {shown!r}")
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is not None and not 0 < port < 65536:
        raise chk.fail(where, f"the port must be from 1 to 65535, in {shown!r}")


def _endpoint(
    name: str,
    table: Mapping[str, Any],
    base: Endpoint | None,
    default_timeouts: Timeouts,
    chk: _Checker,
    where: list[str],
) -> Endpoint:
    if base is None and "base_url" not in table:
        raise chk.fail([*where, "base_url"], "missing: a new endpoint needs base_url")
    url = table.get("base_url", base.base_url if base else "")
    _check_url(url, ("http", "https"), chk, [*where, "base_url"])
    if "proxy" in table:
        _check_url(table["proxy"], ("http", "https", "socks5", "socks5h"), chk, [*where, "proxy"])
    models = table.get("models", list(base.models) if base else [])
    for i, m in enumerate(models):
        if not isinstance(m, str) or not m:
            raise chk.fail([*where, "models"], f"item {i} must be a non-empty string")
    timeouts = base.timeouts if base else default_timeouts
    if "timeouts" in table:
        timeouts = _timeouts(table["timeouts"], timeouts, chk, [*where, "timeouts"])
    verify: bool | str = table.get("verify", base.verify if base else True)
    if "ca_bundle" in table:
        bundle = Path(table["ca_bundle"]).expanduser()
        if not bundle.is_file():
            raise chk.fail([*where, "ca_bundle"], f"file not found: {bundle}")
        verify = str(bundle)
    headers = _string_map(
        table.get("headers", base.headers if base else {}), chk, [*where, "headers"]
    )
    _check_headers(headers, chk, [*where, "headers"])
    mc = table.get("max_concurrency", base.max_concurrency if base else None)
    # An endpoint defined in the user's config speaks chat unless it says otherwise.
    protocol = table.get("protocol", base.protocol if base else "chat")
    if protocol not in PROTOCOLS:
        raise chk.fail(
            [*where, "protocol"], f"unknown protocol {protocol!r} (one of: {', '.join(PROTOCOLS)})"
        )
    return Endpoint(
        name=name,
        base_url=url.rstrip("/"),
        api_key_env=table.get("api_key_env", base.api_key_env if base else None),
        api_key_cmd=table.get("api_key_cmd", base.api_key_cmd if base else None),
        models=tuple(models),
        headers=headers,
        query=_string_map(table.get("query", base.query if base else {}), chk, [*where, "query"]),
        extra_body=dict(table.get("extra_body", base.extra_body if base else {})),
        verify=verify,
        proxy=table.get("proxy", base.proxy if base else None),
        timeouts=timeouts,
        max_concurrency=mc,
        key_required=base.key_required if base else False,
        preset=base.preset if base else False,
        description=table.get("description", base.description if base else ""),
        protocol=protocol,
        thinking=table.get("thinking", base.thinking if base else False),
    )


# --- writing ---------------------------------------------------------------------------------


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temp file, fsync and ``os.replace``."""
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def add_endpoint(
    name: str,
    base_url: str,
    *,
    api_key_env: str | None = None,
    models: list[str] | None = None,
    path: Path | None = None,
    protocol: str | None = None,
) -> Path:
    """Add ``[endpoints.NAME]`` to config.toml, keeping comments; refuses a broken file."""
    import tomlkit

    path = path if path is not None else paths.config_path()
    load_config(path)  # raises ConfigError for a broken file, which we then leave untouched
    import re

    if name in RESERVED_NAMES or not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise ConfigError(
            None,
            f"invalid endpoint name {name!r}: use letters, digits, '-' and '_' "
            f"({', '.join(sorted(RESERVED_NAMES))} is reserved); nothing was written",
        )
    source = path.read_text("utf-8") if path.exists() else ""
    doc = tomlkit.parse(source)
    endpoints = doc.get("endpoints")
    if endpoints is None:
        endpoints = tomlkit.table(is_super_table=True)
        doc["endpoints"] = endpoints
    if name in endpoints:
        raise ConfigError(path, "already exists; edit the file to change it", f"endpoints.{name}")
    table = tomlkit.table()
    table["base_url"] = base_url
    if api_key_env:
        table["api_key_env"] = api_key_env
    if models:
        table["models"] = models
    if protocol and protocol != "chat":
        table["protocol"] = protocol
    table.add(tomlkit.nl())  # a blank line before whatever table follows
    endpoints[name] = table
    new_source = tomlkit.dumps(doc).rstrip("\n") + "\n"
    try:
        parse_config(tomllib.loads(new_source), path=path, source=new_source)
    except ConfigError as exc:
        # The text that failed was never written: name the option, not a line of the file.
        option = {"base_url": "--base-url", "api_key_env": "--key-env", "models": "--model"}
        field = exc.key_path.rsplit(".", 1)[-1]
        where = option.get(field, exc.key_path or "the new endpoint")
        raise ConfigError(None, f"{where}: {exc.detail}; nothing was written") from None
    atomic_write_text(path, new_source)
    return path
