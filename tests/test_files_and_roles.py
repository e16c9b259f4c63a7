"""Files into the prompt (``@path``, ``ask -f``) and roles (``[roles.NAME]``), issue 18."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from providers.capabilities import ChatParams
from providers.config import ConfigError, parse_config
from tests.support.cli import run_cli
from tests.support.mock_server import MockServerProcess
from tests.support.tui import scenario
from tui.session.file_refs import FileRefError, complete, expand, fenced, prepend_files
from tui.session.replay import SuiteError, load_suite
from tui.session.roles import RoleError, apply_role, complete_role, find_role


@pytest.fixture
def files(tmp_path: Path) -> Path:
    tmp_path = tmp_path / "work"
    tmp_path.mkdir()
    (tmp_path / "notes.md").write_text("# Notes\nbuy milk\n")
    (tmp_path / "a b.txt").write_text("spaced")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "main.py").write_text("print('hi')\n")
    (tmp_path / "src" / "mod.py").write_text("x = 1\n")
    (tmp_path / ".hidden").write_text("secret")
    return tmp_path


def test_an_at_word_naming_a_file_becomes_its_fenced_text(files: Path) -> None:
    out = expand("summarise @notes.md please", files)
    assert out.text == "summarise notes.md:\n```markdown\n# Notes\nbuy milk\n``` please"
    assert [(f.name, f.size) for f in out.files] == [("notes.md", 17)]
    # Sentence punctuation after the name stays after the block; quotes take spaces.
    assert expand("see @src/main.py, then", files).text.endswith("```, then")
    assert expand('read @"a b.txt"', files).text == "read a b.txt:\n```\nspaced\n```"


def test_other_at_words_stay_as_typed(files: Path) -> None:
    typed = "mail bob@example.com about @property and @missing.txt; @@notes.md is literal"
    out = expand(typed, files)
    assert out.files == ()
    assert out.text == typed.replace("@@notes.md", "@notes.md")
    # Inside a code fence nothing is read: pasted decorators, or a re-sent prompt's files.
    code = "```python\n@notes.md\ndef f(): ...\n```\nand @notes.md"
    out = expand(code, files)
    assert out.text.startswith("```python\n@notes.md\n") and len(out.files) == 1


def test_a_fence_inside_the_file_cannot_close_the_block(tmp_path: Path) -> None:
    text = "before\n```\ninner\n````\nafter"
    block = fenced("x.txt", text)
    assert block.startswith("x.txt:\n`````\n") and block.endswith("\n`````")
    assert block.count("`````") == 2


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("pic.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "is an image: attach it with /image"),
        ("blob.bin", b"abc\x00def", "is a binary file, not text"),
        ("latin.txt", "caf\xe9".encode("latin-1"), "is not UTF-8 text (byte 3"),
    ],
)
def test_files_that_are_not_text_are_refused_by_name(
    tmp_path: Path, name: str, data: bytes, message: str
) -> None:
    (tmp_path / name).write_bytes(data)
    with pytest.raises(FileRefError, match=r"^" + name.replace(".", r"\.")) as err:
        expand(f"look @{name}", tmp_path)
    assert message in str(err.value)


def test_a_file_over_the_limit_is_refused_with_its_size(tmp_path: Path) -> None:
    (tmp_path / "big.log").write_text("x" * 101)
    with pytest.raises(FileRefError, match=r"big\.log is 101 bytes; .* limited to 100 bytes"):
        expand("@big.log", tmp_path, limit=100)
    assert expand("@big.log", tmp_path, limit=101).files[0].size == 101


def test_tab_completes_at_words_from_the_file_system(files: Path) -> None:
    assert complete("@", files) == ['@"a b.txt"', "@notes.md", "@src/"]
    assert complete("@src/m", files) == ["@src/main.py", "@src/mod.py"]
    assert complete("@.h", files) == ["@.hidden"]
    assert complete("@@no", files) == [] and complete("plain", files) == []
    assert complete("@nothing/x", files) == []


def test_prepend_files_puts_each_file_before_the_prompt_and_leaves_at_words(
    files: Path,
) -> None:
    out = prepend_files("explain @notes.md", ["src/main.py", "notes.md"], files)
    assert out.text == (
        "src/main.py:\n```python\nprint('hi')\n```\n\n"
        "notes.md:\n```markdown\n# Notes\nbuy milk\n```\n\nexplain @notes.md"
    )
    with pytest.raises(FileRefError, match=r"nope\.txt: no such file"):
        prepend_files("x", ["nope.txt"], files)


ROLES_TOML = """
[roles.reviewer]
system = "You review code."
temperature = 0.2
max_tokens = 300
description = "terse code review"

[roles.extract]
json = true
schema_file = "person.json"
"""


def _config(home: Path, extra: str = "") -> str:
    (home / "person.json").write_text(json.dumps({"type": "object", "required": ["name"]}))
    path = home / "config.toml"
    path.write_text(ROLES_TOML + extra)
    return path.read_text()


def test_roles_parse_and_apply_over_the_request(tmp_path: Path) -> None:
    import tomllib

    source = _config(tmp_path)
    cfg = parse_config(tomllib.loads(source), path=tmp_path / "config.toml", source=source)
    reviewer = find_role(cfg.roles, "reviewer")
    applied = apply_role(reviewer, "be nice", ChatParams(temperature=1.0, json_mode=False))
    assert applied.system == "You review code."
    assert (applied.params.temperature, applied.params.max_tokens) == (0.2, 300)
    extract = apply_role(find_role(cfg.roles, "extract"), "keep me", ChatParams(max_tokens=9))
    assert extract.system == "keep me" and extract.params.max_tokens == 9
    assert extract.params.json_mode and extract.params.json_schema == {
        "type": "object",
        "required": ["name"],
    }
    assert apply_role(None, "s", ChatParams()).system == "s"
    assert complete_role(cfg.roles, "re") == ["reviewer"]
    with pytest.raises(RoleError, match=r"no role 'nope' \(roles: extract, reviewer\)"):
        find_role(cfg.roles, "nope")


@pytest.mark.parametrize(
    ("extra", "where"),
    [
        ("\n[roles.bad]\ntemperature = 7\n", "roles.bad.temperature: must be at most 2, got 7"),
        ("\n[roles.bad]\nsistem = 'x'\n", "roles.bad.sistem: unknown key"),
        ("\n[roles.bad]\nschema_file = 'gone.json'\n", "roles.bad.schema_file: cannot read"),
    ],
)
def test_a_broken_role_is_reported_with_its_line(tmp_path: Path, extra: str, where: str) -> None:
    import tomllib

    source = _config(tmp_path, extra)
    with pytest.raises(ConfigError) as err:
        parse_config(tomllib.loads(source), path=tmp_path / "config.toml", source=source)
    assert where in str(err.value)
    assert f"config.toml:{source.splitlines().index('[roles.bad]') + 2}" in str(err.value)


def test_ask_sends_files_and_role(isolated_home: Path, mock_server: MockServerProcess) -> None:
    model = scenario(mock_server, text="ok")
    source = (isolated_home / "code.py").resolve()
    source.write_text("def f():\n    return 1\n")
    _config(isolated_home)
    with (isolated_home / "config.toml").open("a") as f:
        f.write(f'\n[endpoints.mock]\nbase_url = "{mock_server.base_url}"\n')
    r = run_cli("ask", "-m", model, "--role", "reviewer", "-f", str(source), "look @code.py")
    assert r.returncode == 0, r.stderr
    (body,) = [
        rec["body"]
        for rec in mock_server.log()
        if rec["path"] == "/v1/chat/completions" and f"mock/{rec['model']}" == model
    ]
    assert body["messages"] == [
        {"role": "system", "content": "You review code."},
        {
            "role": "user",
            "content": f"{source}:\n```python\ndef f():\n    return 1\n```\n\nlook @code.py",
        },
    ]
    assert (body["temperature"], body.get("max_tokens") or body.get("max_completion_tokens")) == (
        0.2,
        300,
    )
    # A flag given on the command line wins over the role's.
    r = run_cli("ask", "-m", model, "--role", "reviewer", "--temperature", "0.9", "x")
    assert r.returncode == 0, r.stderr
    mine = [
        rec["body"]
        for rec in mock_server.log()
        if rec["path"] == "/v1/chat/completions" and f"mock/{rec['model']}" == model
    ]
    assert mine[-1]["temperature"] == 0.9
    bad = run_cli("ask", "-m", model, "-f", str(isolated_home / "none.txt"), "x")
    assert bad.returncode == 2 and "none.txt: no such file" in bad.stderr
    unknown = run_cli("ask", "-m", model, "--role", "nope", "x")
    assert unknown.returncode == 2 and "no role 'nope'" in unknown.stderr


def test_a_suite_line_names_a_role(tmp_path: Path) -> None:
    import tomllib

    source = _config(tmp_path)
    cfg = parse_config(tomllib.loads(source), path=tmp_path / "config.toml", source=source)
    suite = tmp_path / "suite.jsonl"
    suite.write_text(
        '{"prompt": "a", "role": "reviewer"}\n'
        '{"prompt": "b", "role": "reviewer", "temperature": 0.7, "system": "own"}\n'
        '{"prompt": "c", "role": "extract"}\n'
    )
    a, b, c = load_suite(suite, cfg.roles)
    assert (a.system, a.temperature, a.max_tokens) == ("You review code.", 0.2, 300)
    assert (b.system, b.temperature, b.max_tokens) == ("own", 0.7, 300)
    assert c.json_mode and c.schema == {"type": "object", "required": ["name"]}
    suite.write_text('{"prompt": "a", "role": "ghost"}\n')
    with pytest.raises(SuiteError, match=r"suite\.jsonl:1: no role 'ghost'"):
        load_suite(suite, cfg.roles)


async def test_role_schema_and_files_in_the_app(
    isolated_home: Path, mock_server: MockServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support.tui import (
        chat_requests,
        make_app,
        mock_config,
        replies,
        replies_over,
        send,
        wait_until,
    )
    from tui.widgets.prompt_box import PromptBox

    model = scenario(mock_server, text='{"name": 7}')
    work = isolated_home / "work"
    work.mkdir()
    (work / "notes.md").write_text("buy milk\n")
    (work / "person.json").write_text(json.dumps({"type": "object", "required": ["name"],
        "properties": {"name": {"type": "string"}}}))  # fmt: skip
    monkeypatch.chdir(work)
    roles = {"reviewer": {"system": "You review code.", "temperature": 0.2}}
    app = make_app(mock_config(mock_server, roles=roles), isolated_home, models=[model])
    async with app.run_test(size=(120, 40)) as pilot:
        prompt = app.screen.query_one(PromptBox)
        prompt.set_prompt("/role rev")
        await pilot.press("tab")
        assert prompt.text == "/role reviewer"
        await pilot.press("enter")
        await send(pilot, "/schema person.json")
        topbar = str(app.screen.query_one("#topbar").render())
        assert "role reviewer" in topbar and "schema" in topbar and "T=0.2" in topbar
        prompt.set_prompt("summarise @no")
        prompt.move_cursor(prompt.document.end)
        await pilot.press("tab")
        assert prompt.text == "summarise @notes.md"
        await pilot.press("enter")
        await wait_until(pilot, lambda: replies_over(app), what="the reply")
        (body,) = [r["body"] for r in chat_requests(mock_server, model)]
        assert body["messages"] == [
            {"role": "system", "content": "You review code."},
            {"role": "user", "content": "summarise notes.md:\n```markdown\nbuy milk\n```"},
        ]
        assert body["temperature"] == 0.2
        # The conversation is named by the prompt as typed, and Up recalls it so (the file is
        # read again when it is sent again), not by the file's text pasted in.
        store = app.store
        assert store is not None and store.flush()
        (stored,) = store.conversations()
        assert stored.title == "summarise @notes.md"
        assert store.prompts()[0] == app.prompt_history()[0] == "summarise @notes.md"
        assert body["response_format"]["type"] == "json_schema"
        notes = str(replies(app)[0].notices.render())
        assert "schema invalid at $.name: 7 is not of type 'string'" in notes
        # A binary file is refused by name, and the prompt stays to be fixed.
        (work / "blob.bin").write_bytes(b"\x00\x01")
        await send(pilot, "look @blob.bin")
        assert prompt.text == "look @blob.bin" and len(chat_requests(mock_server, model)) == 1
        await send(pilot, "/role nope")
        await send(pilot, "/role off")
        assert "role" not in str(app.screen.query_one("#topbar").render())
