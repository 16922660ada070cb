"""Reliability 5: bad local input. Each mistake gives one clear line on stderr naming what was wrong
and where, the documented exit code (2 bad input, 1 the work failed), no traceback, and writes
nothing: no store directory, no catalog.

Checked on real processes (`wandb-mirror sync --once`, `run --once`, `check-config`), so log
output and tracebacks would show. tests/test_config.py covers the parser's messages in detail and
tests/test_sync_cli.py the missing and rejected key in-process; this adds the rest and the
"nothing written" promise.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import pytest
from reliability_support import KEY, child_env, cli, write_config

from wandb_mirror.cli import main

FIGURES: dict[str, int] = {"cases": 0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_line(text: str) -> str:
    lines = [x for x in text.splitlines() if x.strip()]
    assert len(lines) == 1, lines
    assert "Traceback" not in text
    return lines[0]


BAD_CONFIGS = [
    # (name, config text with {url}, expected exit, words the one line must contain)
    ("malformed TOML", '[source\nbase_url = "{url}"\n', 2, ["bad.toml:1", "not valid TOML"]),
    ("unknown key", '[source]\nbase_url = "{url}"\n[store]\npath = "m"\n[sync]\nconcurency = 4\n', 2,
     ["bad.toml:6", "sync.concurency", "unknown key"]),
    ("wrong type", '[source]\nbase_url = "{url}"\n[store]\npath = "m"\n[sync]\nconcurrency = "four"\n', 2,
     ["bad.toml:6", "sync.concurrency", "expected an integer"]),
    ("bad duration", '[source]\nbase_url = "{url}"\n[store]\npath = "m"\n[daemon]\npoll_interval = "soon"\n', 2,
     ["bad.toml:6", "daemon.poll_interval"]),
    ("not a URL", '[source]\nbase_url = "api.wandb.ai"\n[store]\npath = "m"\n', 2,
     ["bad.toml:2", "source.base_url", "http://"]),
    ("missing section", '[source]\nbase_url = "{url}"\n', 2, ["missing [store]"]),
    ("not UTF-8", None, 2, ["not UTF-8"]),
]


@pytest.mark.parametrize("name,text,code,words", BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_configuration_is_one_line_exit_2_nothing_written(tmp_path: Path, capsys, name: str, text: Any,
                                                             code: int, words: list[str]) -> None:
    cfg = tmp_path / "bad.toml"
    if text is None:
        cfg.write_bytes(b'[source]\nbase_url = "http://x"\n# caf\xe9\n')
    else:
        cfg.write_text(text.format(url="http://127.0.0.1:9"))
    for argv in (["check-config", str(cfg)], ["sync", "--config", str(cfg), "--once"],
                 ["run", "--config", str(cfg), "--once"]):
        assert main(argv) == code, argv
        out = capsys.readouterr()
        line = one_line(out.err)
        assert line.startswith(f"wandb-mirror {argv[0]}: error: ")
        for w in words:
            assert w in line, (w, line)
        FIGURES["cases"] += 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]  # nothing written


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory):
    from reliability_support import seed_store

    from wandb_mirror.server import start_server

    up = seed_store(tmp_path_factory.mktemp("input") / "up")
    handle = start_server(up, read_only=True, api_key=KEY)
    yield handle
    handle.stop()


def run_both(tmp_path: Path, url: str, env: dict[str, str]) -> list[tuple[int, str]]:
    cfg = write_config(tmp_path, url, store="mirror")
    out = []
    for command in ("sync", "run"):
        p = cli(command, "--config", str(cfg), "--once", env=env, timeout=60)
        assert p.stdout.strip() == "", p.stdout
        out.append((p.returncode, one_line(p.stderr)))
        FIGURES["cases"] += 1
    assert not (tmp_path / "mirror").exists(), "the store was created"
    return out


def test_missing_api_key(tmp_path: Path, keyed_server: Any) -> None:
    empty = tmp_path / "netrc"
    empty.write_text("")
    env = child_env(NETRC=str(empty))
    env.pop("WANDB_API_KEY")
    host = keyed_server.url.split("//")[1]
    for (code, line), command in zip(run_both(tmp_path, keyed_server.url, env), ("sync", "run")):
        assert code == 2
        assert line.startswith(f"wandb-mirror {command}: error: no API key for {host}: set WANDB_API_KEY")


def test_wrong_api_key(tmp_path: Path, keyed_server: Any) -> None:
    wrong = "w" * 40
    host = keyed_server.url.split("//")[1]
    for (code, line), command in zip(run_both(tmp_path, keyed_server.url, child_env(WANDB_API_KEY=wrong)),
                                     ("sync", "run")):
        assert code == 2
        assert line == f"wandb-mirror {command}: error: API key rejected by {host} (HTTP 401)"


def test_unreachable_host(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    t0 = time.monotonic()
    results = run_both(tmp_path, url, child_env())
    assert time.monotonic() - t0 < 20
    for (code, line), command in zip(results, ("sync", "run")):
        assert code == 1
        assert line.startswith(f"wandb-mirror {command}: error: cannot reach {url}: "), line
        assert "Connection refused" in line and "HTTPConnectionPool" not in line, line


def test_unresolvable_host(tmp_path: Path) -> None:
    url = "http://no-such-host.invalid"
    cfg = write_config(tmp_path, url, store="mirror")
    p = cli("sync", "--config", str(cfg), "--once", env=child_env())
    line = one_line(p.stderr)
    assert p.returncode == 1 and line.startswith(f"wandb-mirror sync: error: cannot reach {url}: "), line
    assert not (tmp_path / "mirror").exists()
    FIGURES["cases"] += 1


def test_store_path_that_is_a_file(tmp_path: Path, keyed_server: Any, capsys, monkeypatch) -> None:
    (tmp_path / "mirror").write_text("not a directory")
    cfg = write_config(tmp_path, keyed_server.url, store="mirror")
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    assert main(["sync", "--config", str(cfg), "--once"]) == 2
    line = one_line(capsys.readouterr().err)
    assert "mirror is not a directory" in line
    assert main(["check-config", str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml does not exist" in one_line(capsys.readouterr().err)
    FIGURES["cases"] += 2
