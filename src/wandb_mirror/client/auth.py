"""Where the upstream and its API key come from, as the official client finds them.

The base URL: the configuration's, else $WANDB_BASE_URL, else the `base_url` that
`wandb login --host URL` stores in wandb's settings file ($WANDB_CONFIG_DIR/settings, default
~/.config/wandb/settings), else the W&B cloud. The key: WANDB_API_KEY, else systemd's credential,
else the ~/.netrc entry `wandb login` wrote (a netrc other users can read gets a warning).

The key is handed to the HTTP session and nowhere else: it is never logged, never put in an
exception message, never written to the store.
"""

from __future__ import annotations

import configparser
import logging
import netrc
import os
import re
import stat
from pathlib import Path
from urllib.parse import urlsplit

from ..config import DEFAULT_BASE_URL
from ..errors import UsageError

# wandb 0.31 defaults to the CoreWeave-fronted host and maps it to the classic one; `wandb login`
# against either may have written the netrc entry, so look under both (wbnetrc.py does the same).
_HOST_ALIASES = {
    "api.wandb.ai": "api.forge.coreweave.com",
    "api.forge.coreweave.com": "api.wandb.ai",
}


log = logging.getLogger("wandb_mirror.auth")
_warned: set[Path] = set()


def wandb_settings_path() -> Path:
    config_dir = os.environ.get("WANDB_CONFIG_DIR")
    return (Path(config_dir).expanduser() if config_dir else Path.home() / ".config" / "wandb") / "settings"


def default_base_url() -> tuple[str, str]:
    """(base URL, where it came from) when the configuration names none."""
    env = os.environ.get("WANDB_BASE_URL", "").strip()
    if env:
        return env, "WANDB_BASE_URL"
    path = wandb_settings_path()
    parser = configparser.ConfigParser()
    try:
        parser.read(path, encoding="utf-8")
        stored = parser.get("default", "base_url", fallback="").strip()
    except (OSError, configparser.Error, UnicodeDecodeError):
        stored = ""  # the official client ignores an unreadable settings file too
    if stored:
        return stored, str(path)
    return DEFAULT_BASE_URL, "the default"


def _warn_if_readable(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRGRP | stat.S_IROTH) and path not in _warned:
        _warned.add(path)
        log.warning("%s holds your API key and other users can read it (mode %o): chmod 600 %s",
                    path, stat.S_IMODE(mode), path)


class ApiKeyMissing(UsageError):
    """No API key for the upstream host: exit 2 with one line that says where we looked."""


def netrc_path() -> Path:
    # `wandb login` honours $NETRC first, like requests and curl.
    env = os.environ.get("NETRC")
    return Path(env).expanduser() if env else Path.home() / ".netrc"


def _netrc_lookup(base_url: str) -> str | None:
    path = netrc_path()
    try:
        rc = netrc.netrc(str(path))
    except FileNotFoundError:
        return None
    except (netrc.NetrcParseError, OSError) as e:
        # A broken netrc is the user's input: say so instead of pretending there is no key. The
        # parser quotes the token it choked on, which may be the key itself: never repeat it.
        where = f" line {e.lineno}" if isinstance(e, netrc.NetrcParseError) and e.lineno else ""
        msg = e.msg if isinstance(e, netrc.NetrcParseError) else (e.strerror or type(e).__name__)
        msg = re.sub(r"'[^']*'", "(token not shown)", str(msg))
        raise UsageError(f"cannot read {path}{where}: {msg}") from None
    parts = urlsplit(base_url)
    candidates = [parts.netloc, parts.hostname or ""]
    alias = _HOST_ALIASES.get(parts.hostname or "")
    if alias:
        candidates.append(alias)
    for host in candidates:
        if not host:
            continue
        creds = rc.authenticators(host)
        if creds and creds[2]:
            _warn_if_readable(path)
            return creds[2]
    return None


def _systemd_credential() -> str | None:
    # LoadCredential=wandb-api-key:/etc/wandb-mirror/api-key (see docs/daemon.md)
    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    if not cred_dir:
        return None
    try:
        return (Path(cred_dir) / "wandb-api-key").read_text().strip() or None
    except OSError:
        return None


def resolve_api_key(base_url: str, explicit: str | None = None) -> str:
    """The key for `base_url`: explicit, else $WANDB_API_KEY, else systemd's credential
    `wandb-api-key`, else ~/.netrc; UsageError if none."""
    if explicit:
        return explicit
    env = os.environ.get("WANDB_API_KEY", "").strip()
    if env:
        return env
    cred = _systemd_credential()
    if cred:
        return cred
    key = _netrc_lookup(base_url)
    if key:
        return key
    host = urlsplit(base_url).netloc or base_url
    raise ApiKeyMissing(
        f"no API key for {host}: set WANDB_API_KEY or run `wandb login --host {base_url}` "
        f"(which writes {netrc_path()})"
    )
