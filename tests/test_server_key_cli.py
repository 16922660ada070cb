"""`serve` takes the key it demands from a file or the environment (kept out of `ps`), demands it on
every route, and a client hanging up mid-request is not reported as an error."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

KEY = "s3cr3t-" + "k" * 33


def _serve(store: Path, *extra: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "wandb_mirror.cli", "serve", "--store", str(store), "--port", "0",
                             "--read-only", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
    line = proc.stdout.readline().strip()
    assert line.startswith("listening on http://127.0.0.1:"), line
    return proc, line.split()[-1]


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.terminate()
    _, err = proc.communicate(timeout=10)
    return err


def test_key_from_file_or_env_never_on_the_command_line(seeded_store: Path, tmp_path: Path) -> None:
    keyfile = tmp_path / "key"
    keyfile.write_text(KEY + "\n")
    for extra, env in ((("--api-key-file", str(keyfile)), None), ((), {"WANDB_MIRROR_SERVE_API_KEY": KEY})):
        proc, url = _serve(seeded_store, *extra, env=env)
        try:
            assert KEY not in Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode(errors="replace")
            for path in ("/", "/healthz"):
                assert requests.get(url + path, timeout=10).status_code == 401
                assert requests.get(url + path, auth=("api", KEY), timeout=10).status_code == 200
            q = {"query": "{ viewer { entity } }"}
            assert requests.post(url + "/graphql", json=q, auth=("api", "wrong"), timeout=10).status_code == 401
            assert requests.post(url + "/graphql", json=q, auth=("api", KEY), timeout=10).json()["data"]["viewer"]
        finally:
            _stop(proc)
    bad = subprocess.run([sys.executable, "-m", "wandb_mirror.cli", "serve", "--store", str(seeded_store),
                          "--api-key-file", str(tmp_path / "missing")], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--api-key-file" in bad.stderr and "Traceback" not in bad.stderr


def test_client_hanging_up_is_not_a_traceback(seeded_store: Path) -> None:
    proc, url = _serve(seeded_store)
    try:
        host, port = url.removeprefix("http://").split(":")
        body = b'{"query": "{ viewer { entity } }"}'
        request = (b"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                   b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        for partial in (True, False):
            for _ in range(3):
                s = socket.create_connection((host, int(port)))
                if partial:  # half a request
                    s.sendall(request[:-10])
                else:  # a whole keep-alive request, then gone while the server waits for the next one
                    s.sendall(request)
                    s.recv(65536)
                time.sleep(0.05)
                # a reset (SO_LINGER 0) instead of a clean close, as a killed process leaves it
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                s.close()
        time.sleep(0.3)
        assert requests.post(url + "/graphql", json={"query": "{ viewer { entity } }"}, timeout=10).ok
    finally:
        err = _stop(proc)
    assert "Traceback" not in err, err
