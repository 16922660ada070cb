"""HTTP transport to a W&B server: one requests.Session, Basic auth, retries, limits, counters.

Retry policy (wandb-core's `RetryMostFailures`, protocol §2.4):
- retried: 429, every 5xx, other 4xx not listed below, connection errors, timeouts, truncated bodies;
  waits grow exponentially with 0-25% jitter, capped, and `Retry-After` (seconds or HTTP date)
  replaces the computed wait;
- failed at once: 400 401 402 403 404 409 410 413 422 501, and GraphQL `errors` in a 200.
Each call is bounded (attempts and wall time); the whole pass is bounded by a retry budget shared
by all threads, so a sick upstream makes the pass fail instead of retrying forever.

A global semaphore bounds in-flight requests across threads and an optional token bucket bounds
the request rate. Credentials go only to URLs under the base URL (wandb-core's `LimitTo`):
presigned object-store URLs never see the key.

Hostile upstreams are bounded: a GraphQL answer over `max_response` bytes fails the call (memory
stays bounded whatever the server sends), and the key, raw or in its Basic form, is redacted from
every upstream message before it becomes an exception, a log line or a stored error.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import json
import logging
import random
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

import requests
import tenacity

from .. import __version__
from ..errors import Stopping, UsageError, WorkFailed

log = logging.getLogger("wandb_mirror.client")

NO_RETRY_STATUS = frozenset({400, 401, 402, 403, 404, 409, 410, 413, 422, 501})
# Bytes read from a response at a time. Each worker holds about two of them (the chunk and the
# socket buffer behind it): 256 KiB keeps 8 workers ~12 MB smaller at the peak than 1 MiB did, for
# no measurable CPU (the bench's first mirror: 2.2 s either way on the quick workload).
CHUNK = 1 << 18
MAX_RESPONSE = 512 << 20  # bytes of one GraphQL answer (`[sync] max_response_mb`)
REDACTED = "[redacted]"


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------
class ApiError(WorkFailed):
    """An upstream call failed for good (after retries, or at once for a non-retryable status)."""

    def __init__(self, message: str, *, status: int | None = None, operation: str | None = None):
        super().__init__(message)
        self.status = status
        self.operation = operation


class AuthError(UsageError):
    """The upstream rejected the API key (401): the user must fix their key, exit 2."""


class GraphQLError(ApiError):
    """The response carried a GraphQL `errors` array; partial data is dropped, as the SDK does."""


class NotFound(ApiError):
    """404 from the upstream."""


class RetryBudgetExhausted(ApiError):
    """The pass used up its retry budget; further failures fail at once."""


class _Retryable(Exception):
    """Internal: one attempt failed in a way worth retrying."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


# ---------------------------------------------------------------------------------------------
# knobs and counters
# ---------------------------------------------------------------------------------------------
@dataclass
class RetryPolicy:
    max_attempts: int = 10          # per call, first try included
    max_call_seconds: float = 300.0  # per call, waits included
    wait_min: float = 1.0           # first backoff
    wait_max: float = 60.0          # cap of the computed backoff (Retry-After may exceed it, up to the call bound)
    budget: int = 500               # retries per pass, all threads together
    integrity_attempts: int = 3     # downloads whose bytes fail verification are fetched at most this often


@dataclass
class RequestStats:
    """Counters for the pass record and the summary line. Thread-safe through `lock`."""

    total: int = 0
    by_operation: Counter = field(default_factory=Counter)
    retries: int = 0
    rate_limited: int = 0          # 429 answers
    server_errors: int = 0         # 5xx answers
    failures: int = 0              # calls that failed for good
    bytes_downloaded: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, operation: str) -> None:
        with self.lock:
            self.total += 1
            self.by_operation[operation] += 1

    def add(self, name: str, n: int = 1) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + n)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "total": self.total,
                "by_operation": dict(sorted(self.by_operation.items())),
                "retries": self.retries,
                "rate_limited": self.rate_limited,
                "server_errors": self.server_errors,
                "failures": self.failures,
                "bytes_downloaded": self.bytes_downloaded,
            }


class RateLimiter:
    """Token bucket shared by all threads: `rate` requests per second, bursts up to `burst` (default 1,
    i.e. evenly spaced requests, which is what a rate-limited upstream wants to see)."""

    def __init__(self, rate: float, burst: float | None = None):
        self.rate = float(rate)
        self.capacity = float(burst if burst is not None else 1.0)
        self.tokens = self.capacity
        self.updated = time.monotonic()
        self.lock = threading.Lock()

    def acquire(self, share: int = 1) -> None:
        """Wait for a token; `share`: how many processes divide the rate (each gets rate / share)."""
        if self.rate <= 0:
            return
        rate = self.rate / max(1, share)
        while True:
            with self.lock:
                now = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * rate)
                self.updated = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                wait = (1 - self.tokens) / rate
            time.sleep(wait)


class _Budget:
    def __init__(self, n: int):
        self.left = n
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            if self.left <= 0:
                return False
            self.left -= 1
            return True


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: integer seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _error_message(resp: requests.Response) -> str:
    """The upstream's own words: GraphQL errors, a JSON `error`, or the start of the body."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        errs = body.get("errors")
        if isinstance(errs, list) and errs:
            return "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errs)[:500]
        if "error" in body:
            return str(body["error"])[:500]
    text = (resp.text or "").strip().replace("\n", " ")
    return text[:200] or resp.reason or f"HTTP {resp.status_code}"


# ---------------------------------------------------------------------------------------------
# the transport
# ---------------------------------------------------------------------------------------------
class SharedPause(Protocol):
    """A request pause shared with other processes using the same key, and how many of them share the
    configured rate limit (store/rate_pauses.PauseGate)."""

    def wait(self, stop: threading.Event | None = None) -> None: ...

    def pause(self, seconds: float, reason: str = ...) -> None: ...

    def share(self) -> int: ...


class Transport:
    """Everything that touches the network. Thread-safe; one instance per pass (or per daemon)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        concurrency: int = 4,
        rate_limit: float = 0.0,
        timeout: float = 60.0,
        connect_timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        user_agent: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        max_response: int = MAX_RESPONSE,
    ):
        if not base_url.startswith(("http://", "https://")):
            raise UsageError(f"base_url must start with http:// or https://, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.host = urlsplit(self.base_url).netloc
        self.graphql_url = f"{self.base_url}/graphql"
        self.retry = retry or RetryPolicy()
        self.timeout = (connect_timeout, timeout)
        self.stats = RequestStats()
        self._budget = _Budget(self.retry.budget)
        self._sem = threading.BoundedSemaphore(max(1, int(concurrency)))
        self._limiter = RateLimiter(rate_limit) if rate_limit and rate_limit > 0 else None
        self._sleep = sleep
        self._key = api_key
        self.max_response = max(1, int(max_response))
        # every form in which an upstream could echo the key back: raw, Basic (api:KEY), bare base64
        self._secrets = sorted({x for x in (api_key, base64.b64encode(f"api:{api_key}".encode()).decode(),
                                            base64.b64encode(api_key.encode()).decode()) if x and len(x) >= 4},
                               key=len, reverse=True)
        # requests.Session is not thread-safe: a request borrows one from this pool (while holding the
        # semaphore, so there are never more than `concurrency`), keeping connections alive across
        # passes without one Session per short-lived worker thread.
        self._idle: list[requests.Session] = []
        self._all_sessions: list[requests.Session] = []
        self._sessions_lock = threading.Lock()
        # (operation, variables) of every GraphQL call when set to a list: for tests and debugging
        # (the key is never part of it).
        self.trace: list[tuple[str, dict[str, Any]]] | None = None
        # Set by a daemon or `sync`: once `stop` is set, every further request, retry wait and chunk
        # of a download in progress raises PassAborted (the store discards a half-written object),
        # and downloads blocked in a read are cut at once; `on_activity` is called on each, as a
        # liveness signal for the systemd watchdog.
        self._stop: threading.Event | None = None
        self._watched: threading.Event | None = None
        self._inflight: set[requests.Response] = set()
        self._inflight_lock = threading.Lock()
        self.on_activity: Callable[[], None] | None = None
        # Several workers sharing one key (store/rate_pauses.py): checked before every request, told
        # of every 429 with Retry-After, so a rate limit pauses all of them at once.
        self.shared_pause: SharedPause | None = None
        # We identify as ourselves (User-Agent wandb-mirror/VERSION). The official client sends
        # "W&B Public Client 0.31.0", which the cloud uses to unlock first-party fields such as
        # User.apiKeys (protocol 2.3) - fields a mirror never asks for; `[source] user_agent` can
        # override ours if a server insists. `Use-Admin-Privileges: true` is sent with every call by
        # the official client (wandb/apis/public/api.py:176): with an admin's key the server answers
        # with that key's admin access instead of only its membership. We send it too, so a mirror
        # sees exactly what the official client would see with the same key; for other keys it is a
        # no-op.
        self.headers = {
            "User-Agent": user_agent or f"wandb-mirror/{__version__}",
            "Use-Admin-Privileges": "true",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }

    def key_fingerprint(self, salt: str) -> str:
        """A salted sha256 of the key: names it in shared state without ever storing it."""
        return hashlib.sha256(f"{salt}:{self._key}".encode()).hexdigest()

    def redact(self, text: str) -> str:
        """`text` (an upstream's message) with the key removed in every form it could be echoed in."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    # -- stopping ----------------------------------------------------------------------------
    @property
    def stop(self) -> threading.Event | None:
        return self._stop

    @stop.setter
    def stop(self, event: threading.Event | None) -> None:
        self._stop = event
        if event is not None and event is not self._watched:
            self._watched = event
            threading.Thread(target=self._cut_when_set, args=(event,), name="transport-stop", daemon=True).start()

    def _cut_when_set(self, event: threading.Event) -> None:
        # A download whose body trickles in never reaches the next chunk check: shutting its socket
        # down makes the blocked read return at once.
        event.wait()
        if event is not self._stop:
            return
        with self._inflight_lock:
            responses = list(self._inflight)
        for resp in responses:
            sock = getattr(getattr(resp.raw, "_connection", None), "sock", None)
            try:
                if sock is not None:
                    sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    @contextmanager
    def _cuttable(self, resp: requests.Response) -> Iterator[None]:
        """While its body is read, a stop shuts `resp`'s socket (see _cut_when_set)."""
        with self._inflight_lock:
            self._inflight.add(resp)
        try:
            if self._stopping():  # set while the headers came: the watcher may have missed it
                raise Stopping(STOPPING)
            yield
        finally:
            with self._inflight_lock:
                self._inflight.discard(resp)

    def _stopping(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    def _pause(self, seconds: float) -> None:
        """The wait before a retry; a stop ends it at once."""
        if self._stop is None:
            self._sleep(seconds)
        elif self._stop.wait(seconds):
            raise Stopping(STOPPING)

    # -- sessions ----------------------------------------------------------------------------
    def _take_session(self) -> requests.Session:
        with self._sessions_lock:
            if self._idle:
                return self._idle.pop()
        s = requests.Session()
        s.headers.update(self.headers)
        s.trust_env = False  # no ~/.netrc auth injected by requests for foreign hosts; proxies set below
        s.proxies.update(requests.utils.get_environ_proxies(self.base_url))
        with self._sessions_lock:
            self._all_sessions.append(s)
        return s

    def _give_session(self, s: requests.Session) -> None:
        with self._sessions_lock:
            self._idle.append(s)

    def close(self) -> None:
        with self._sessions_lock:
            for s in self._all_sessions:
                s.close()
            self._all_sessions.clear()
            self._idle.clear()

    def resolve(self, url: str) -> str:
        """Absolute URL: W&B sometimes hands out paths relative to the API host."""
        if url.startswith("/"):
            return urljoin(self.base_url + "/", url.lstrip("/"))
        return url

    def under_base(self, url: str) -> bool:
        """Whether credentials may be attached: same scheme, host and path prefix as base_url."""
        a, b = urlsplit(url), urlsplit(self.base_url)
        return (a.scheme, a.netloc) == (b.scheme, b.netloc) and (a.path or "/").startswith(b.path or "/")

    # -- retry machinery ---------------------------------------------------------------------
    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        n = state.attempt_number  # attempts made so far (>= 1)
        backoff = min(self.retry.wait_max, self.retry.wait_min * (2 ** (n - 1)))
        backoff *= 1 + random.uniform(0, 0.25)
        if isinstance(exc, _Retryable) and exc.retry_after is not None:
            backoff = exc.retry_after
        return backoff

    def _give_up(self, state: tenacity.RetryCallState, max_attempts: int | None = None) -> bool:
        if self._stopping():
            return True
        if state.attempt_number >= (max_attempts or self.retry.max_attempts):
            return True
        wait = self._wait(state)
        if (state.seconds_since_start or 0.0) + wait > self.retry.max_call_seconds:
            return True
        if not self._budget.take():
            return True
        return False

    def _before_sleep(self, state: tenacity.RetryCallState) -> None:
        self.stats.add("retries")
        exc = state.outcome.exception() if state.outcome else None
        log.debug("retrying %s after %s (attempt %d, waiting %.1fs)", getattr(state, "_op", "?"), exc,
                  state.attempt_number, state.next_action.sleep if state.next_action else 0)

    def _with_retries(self, operation: str, attempt: Callable[[], Any], max_attempts: int | None = None) -> Any:
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_Retryable),
            stop=lambda state: self._give_up(state, max_attempts),
            wait=self._wait,
            before_sleep=self._before_sleep,
            sleep=self._pause,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except _Retryable as e:
            if self._stopping():
                raise Stopping(STOPPING) from None
            self.stats.add("failures")
            attempts = retrying.statistics.get("attempt_number", 1)
            if self._budget.left <= 0:
                raise RetryBudgetExhausted(
                    f"{operation}: {e} (retry budget of {self.retry.budget} for this pass is used up)",
                    status=e.status, operation=operation) from None
            raise ApiError(f"{operation}: {e} (gave up after {attempts} attempts)", status=e.status,
                           operation=operation) from None
        except ApiError:
            self.stats.add("failures")
            raise
        except AuthError:
            self.stats.add("failures")
            raise

    def _check_status(self, resp: requests.Response, operation: str) -> None:
        code = resp.status_code
        if code < 400:
            return
        if code == 429:
            self.stats.add("rate_limited")
        elif code >= 500:
            self.stats.add("server_errors")
        if code == 401:
            resp.close()
            raise AuthError(f"API key rejected by {self.host} (HTTP 401)")
        if code in NO_RETRY_STATUS:
            msg = self.redact(_error_message(resp))
            resp.close()
            if code == 403:
                raise ApiError(f"{operation}: permission denied by {self.host} (HTTP 403): {msg}",
                               status=code, operation=operation)
            if code == 404:
                raise NotFound(f"{operation}: not found on {self.host} (HTTP 404): {msg}", status=code,
                               operation=operation)
            raise ApiError(f"{operation}: HTTP {code} from {self.host}: {msg}", status=code, operation=operation)
        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        if code == 429 and retry_after is not None and self.shared_pause is not None:
            self.shared_pause.pause(retry_after, f"HTTP 429 on {operation}, Retry-After {retry_after:g}s")
        msg = self.redact(_error_message(resp))
        resp.close()
        raise _Retryable(f"HTTP {code}: {msg}", status=code, retry_after=retry_after)

    def _send(self, session: requests.Session, method: str, url: str, operation: str, *, stream: bool = False,
              **kw: Any) -> requests.Response:
        """One attempt: limits, counting, transport errors mapped to retryable ones."""
        self._check_stop()
        if self.shared_pause is not None:
            self.shared_pause.wait(self._stop)
            self._check_stop()
        if self._limiter:
            self._limiter.acquire(self.shared_pause.share() if self.shared_pause is not None else 1)
        self.stats.count(operation)
        auth = ("api", self._key) if self.under_base(url) else None
        try:
            resp = session.request(method, url, auth=auth, timeout=self.timeout, stream=stream,
                                           allow_redirects=True, **kw)
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                requests.exceptions.InvalidSchema) as e:
            raise ApiError(self.redact(f"{operation}: invalid URL from upstream: {e}"), operation=operation) from None
        except requests.exceptions.ConnectTimeout as e:
            raise _Retryable(self.redact(f"connection failed: timed out connecting to {urlsplit(url).netloc} "
                                         f"({_connection_reason(e)})")) from None
        except requests.exceptions.ConnectionError as e:
            raise _Retryable(self.redact(f"connection failed: {_connection_reason(e)}")) from None
        except requests.RequestException as e:  # timeouts and broken chunked bodies included
            raise _Retryable(self.redact(f"{type(e).__name__}: {_short(e)}")) from None
        # (requests drops Authorization itself when a redirect leaves the host.)
        self._check_status(resp, operation)
        return resp

    def _check_stop(self) -> None:
        if self._stopping():
            raise Stopping(STOPPING)
        if self.on_activity is not None:
            self.on_activity()

    # -- GraphQL -----------------------------------------------------------------------------
    def graphql(self, operation: str, query: str, variables: dict[str, Any] | None = None, *,
                max_attempts: int | None = None) -> dict[str, Any]:
        """POST {base}/graphql; returns `data`. GraphQL `errors` fail the call (no retry).
        `max_attempts` lowers the policy's attempts for this call (a start-up check fails fast)."""
        body: dict[str, Any] = {"query": query, "operationName": operation}
        if variables:
            body["variables"] = variables
        payload = json.dumps(body, allow_nan=False)
        if self.trace is not None:
            self.trace.append((operation, dict(variables or {})))

        def attempt() -> dict[str, Any]:
            with self._sem:
                session = self._take_session()
                try:
                    resp = self._send(session, "POST", self.graphql_url, operation, data=payload, stream=True)
                    try:
                        with self._cuttable(resp):
                            raw = self._read_capped(resp, operation)
                    except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as e:
                        raise _Retryable(self.redact(f"truncated response: {_short(e)}")) from None
                    finally:
                        resp.close()
                finally:
                    self._give_session(session)
            try:
                doc = json.loads(raw)
            except RecursionError:
                raise ApiError(f"{operation}: the answer is nested too deeply to be JSON we accept",
                               operation=operation) from None
            except ValueError:
                # A 200 whose body is not JSON is a truncated or garbled answer: try again.
                raise _Retryable(f"response is not JSON ({len(raw)} bytes)") from None
            if not isinstance(doc, dict):
                raise _Retryable("response is not a JSON object")
            errors = doc.get("errors")
            if errors:
                msgs = [str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in
                        (errors if isinstance(errors, list) else [errors])]
                raise GraphQLError(self.redact(f"{operation}: {'; '.join(msgs)}")[:500], status=resp.status_code,
                                   operation=operation)
            data = doc.get("data")
            if not isinstance(data, dict):
                raise GraphQLError(f"{operation}: response has no data", operation=operation)
            return data

        return self._with_retries(operation, attempt, max_attempts)

    def _read_capped(self, resp: requests.Response, operation: str) -> bytes:
        """The whole body, refused (not retried: it would only grow again) once over `max_response`."""
        announced = resp.headers.get("Content-Length")
        if announced and announced.isdigit() and int(announced) > self.max_response:
            raise ApiError(f"{operation}: the answer announces {int(announced)} bytes, over the limit of "
                           f"{self.max_response} ([sync] max_response_mb)", operation=operation)
        buf = bytearray()
        for chunk in resp.iter_content(CHUNK):
            self._check_stop()
            buf += chunk
            if len(buf) > self.max_response:
                raise ApiError(f"{operation}: the answer passed {self.max_response} bytes and was abandoned "
                               "([sync] max_response_mb)", operation=operation)
        return bytes(buf)

    # -- writes that are not GraphQL (file_stream, uploads) -----------------------------------
    def send(self, method: str, url: str, operation: str, *, data: bytes | Callable[[], Any],
             headers: dict[str, str] | None = None) -> bytes:
        """POST/PUT `data` (bytes, or a callable giving a fresh body per attempt, e.g. an open file)
        with the same retries, limits and Retry-After handling as every other call; the answer's body."""
        url = self.resolve(url)

        def attempt() -> bytes:
            with self._sem:
                session = self._take_session()
                try:
                    body = data() if callable(data) else data
                    resp = self._send(session, method, url, operation, data=body, headers=headers or {})
                    try:
                        return self._read_capped(resp, operation)
                    except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as e:
                        raise _Retryable(f"truncated response: {_short(e)}") from None
                    finally:
                        resp.close()
                        if hasattr(body, "close"):
                            body.close()
                finally:
                    self._give_session(session)

        return self._with_retries(operation, attempt)

    # -- downloads ---------------------------------------------------------------------------
    def download(self, url: str, operation: str, consume: Callable[[Iterator[bytes]], Any]) -> Any:
        """GET `url` and feed its body, chunk by chunk, to `consume` (e.g. a verifying store write).

        A connection that breaks mid-body is retried like any transport error; `consume` must
        therefore be restartable (Objects.put_stream is: it publishes nothing on failure).
        """
        url = self.resolve(url)
        scheme = urlsplit(url).scheme
        if scheme not in ("http", "https"):
            raise ApiError(f"{operation}: refusing to download from a {scheme or 'schemeless'} URL",
                           operation=operation)

        def attempt() -> Any:
            with self._sem:
                session = self._take_session()
                try:
                    resp = self._send(session, "GET", url, operation, stream=True, headers={"Accept": "*/*"})
                    try:
                        with self._cuttable(resp):
                            return consume(self._chunks(resp))
                    except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError,
                            requests.Timeout) as e:
                        raise _Retryable(f"download interrupted: {_short(e)}") from None
                    except _Truncated as e:
                        raise _Retryable(str(e)) from None
                    finally:
                        resp.close()
                finally:
                    self._give_session(session)

        return self._with_retries(operation, attempt)

    def _chunks(self, resp: requests.Response) -> Iterator[bytes]:
        expected = resp.headers.get("Content-Length")
        limit = int(expected) if expected and expected.isdigit() and "Content-Encoding" not in resp.headers else None
        n = 0
        for chunk in resp.iter_content(CHUNK):
            self._check_stop()
            n += len(chunk)
            if limit is not None and n > limit:  # never more than announced (the store checks the file's size)
                raise _Truncated(f"body longer than its announced {limit} bytes")
            self.stats.add("bytes_downloaded", len(chunk))
            yield chunk
        # urllib3 enforces Content-Length for identity bodies; check anyway for decoded bodies.
        if expected is not None and expected.isdigit() and "Content-Encoding" not in resp.headers and n < int(expected):
            raise _Truncated(f"body truncated: {n} of {expected} bytes")


STOPPING = "stop requested: the pass stops here (what was recorded stays; the next pass resumes)"


class _Truncated(Exception):
    pass


_ERRNO_TEXT = re.compile(r"\[Errno (-?\d+)\] ([^'\")\]]+)")


def _connection_reason(e: BaseException) -> str:
    """The operating system's reason inside urllib3's nested wrappers ("[Errno 111] Connection
    refused", "host not found: ..."), instead of their repr()s."""
    text = str(e)
    m = _ERRNO_TEXT.search(text)
    if "resolve" in text.lower() or "NameResolution" in text:
        host = re.search(r"Failed to resolve '([^']+)'", text)
        what = f"cannot resolve host {host.group(1)!r}" if host else "cannot resolve the host"
        return f"{what} ([Errno {m.group(1)}] {m.group(2).strip()})" if m else what
    if m:
        return f"[Errno {m.group(1)}] {m.group(2).strip()}"
    if "timed out" in text.lower():
        return "timed out"
    return _short(e)


def _short(e: BaseException) -> str:
    s = str(e)
    return s if len(s) <= 200 else s[:197] + "..."
