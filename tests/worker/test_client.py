"""The worker's HTTP client against a tiny local HTTP server: what is retried and what is not."""

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from worker.client import ApiClient, ApiError, ApiUnavailable, LeaseLost, RetryPolicy

FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05, jitter=0.0)


class ScriptedServer:
    """Answers each request with the next (status, body, headers) of a script; records every request."""

    def __init__(self, script):
        self.script = list(script)
        self.requests: list[tuple[str, str, dict, dict]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"null")
                outer.requests.append(("POST", self.path, dict(self.headers), body))
                status, answer, headers = outer.script.pop(0) if outer.script else (500, {"detail": "no script"}, {})
                data = b"" if answer is None else json.dumps(answer).encode()
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def client_for(server, sleeps=None, policy=FAST):
    return ApiClient(server.url, "tok123", retry=policy, timeout=5,
                     sleep=(sleeps.append if sleeps is not None else lambda s: None))


def test_claim_retries_5xx_then_returns_job():
    job = {"kind": "package", "id": 3, "lease_token": "L"}
    with ScriptedServer([(503, {"detail": "down"}, {}), (502, None, {}), (200, job, {})]) as server:
        result = client_for(server).claim(worker="w1", kinds=["package"], lease_seconds=60)

    assert result == job
    assert len(server.requests) == 3
    assert server.requests[0][1] == "/api/v1/work/claim/"
    assert server.requests[0][2]["Authorization"] == "Token tok123"
    assert server.requests[0][3] == {"worker": "w1", "kinds": ["package"], "lease_seconds": 60,
                                     "request_id": server.requests[0][3]["request_id"]}
    assert len({r[3]["request_id"] for r in server.requests}) == 1  # a retry repeats the claim's id


def test_claim_no_work_returns_none():
    with ScriptedServer([(204, None, {})]) as server:
        assert client_for(server).claim(worker="w1") is None
        assert server.requests[0][3] == {"worker": "w1", "request_id": server.requests[0][3]["request_id"]}


def test_claim_without_any_answer_is_repeated_with_its_id_by_the_next_claim():
    """The server may have taken a job for a claim whose answer was lost: the next claim asks for it again."""
    script = [(503, None, {})] * 4 + [(200, {"kind": "package", "id": 3}, {}), (204, None, {})]
    with ScriptedServer(script) as server:
        client = client_for(server)
        with pytest.raises(ApiUnavailable):
            client.claim(worker="w1")
        assert client.claim(worker="w1") == {"kind": "package", "id": 3}
        client.claim(worker="w1")

    ids = [r[3]["request_id"] for r in server.requests]
    assert len(set(ids[:5])) == 1
    assert ids[5] != ids[0]


def test_429_retried_honouring_retry_after():
    sleeps: list[float] = []
    policy = RetryPolicy(attempts=3, base_delay=0.01, max_delay=2.0, jitter=0.0)
    script = [(429, {"detail": "slow down"}, {"Retry-After": "1.5"}), (200, {"lease_expires_at": "x"}, {})]
    with ScriptedServer(script) as server:
        answer = client_for(server, sleeps, policy).heartbeat("transfer", 4, "L", bytes_done=10)

    assert answer == {"lease_expires_at": "x"}
    assert sleeps == [1.5]
    assert server.requests[0][3] == {"lease_token": "L", "bytes_done": 10}


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_4xx_not_retried(status):
    with ScriptedServer([(status, {"detail": "no"}, {}), (200, {}, {})]) as server:
        with pytest.raises(ApiError) as excinfo:
            client_for(server).complete("archive", 9, "L", {"checksum": "abc"})

    assert excinfo.value.status == status
    assert len(server.requests) == 1


def test_409_on_report_is_lease_lost_and_not_retried():
    with ScriptedServer([(409, {"detail": "lease not held", "status": "PENDING"}, {})]) as server:
        with pytest.raises(LeaseLost) as excinfo:
            client_for(server).fail("unpack", 2, "L", error="boom", log_path="/l.log")

    assert excinfo.value.body == {"detail": "lease not held", "status": "PENDING"}
    assert len(server.requests) == 1
    assert server.requests[0][3] == {"lease_token": "L", "error": "boom", "retryable": True, "log_path": "/l.log"}


def test_persistent_5xx_gives_up_after_bounded_attempts():
    sleeps: list[float] = []
    with ScriptedServer([(500, {}, {})] * 10) as server:
        with pytest.raises(ApiUnavailable, match="after 4 attempts"):
            client_for(server, sleeps).complete("stage", 1, "L", {})

    assert len(server.requests) == 4
    assert sleeps == [0.01, 0.02, 0.04]


def test_unreachable_server_retried_then_unavailable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sleeps: list[float] = []
    client = ApiClient(f"http://127.0.0.1:{port}", "t", retry=FAST, timeout=1, sleep=sleeps.append)

    with pytest.raises(ApiUnavailable, match="ConnectionError"):
        client.claim(worker="w")

    assert len(sleeps) == 3


def test_backoff_grows_exponentially_within_cap():
    policy = RetryPolicy(attempts=10, base_delay=1.0, max_delay=5.0, jitter=0.0)

    assert [policy.delay(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_backoff_jitter_stays_in_band():
    policy = RetryPolicy(base_delay=1.0, max_delay=100.0, jitter=0.3)

    delays = [policy.delay(3) for _ in range(200)]

    assert min(delays) >= 2.8 and max(delays) <= 5.2
    assert len(set(delays)) > 1
