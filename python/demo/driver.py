"""Start the demo app (app.py) under gunicorn and drive it: shared by the
end-to-end test (python/tests/test_gunicorn.py) and make demo-flask
(demo_flask.py).

gunicorn listens on a unix socket in a private temporary directory, so runs
never collide on a TCP port.  Everything that waits does so by polling a
condition against a deadline, and the server is always stopped.
"""
import concurrent.futures
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON = "/usr/bin/python3"  # Debian's, which sees python3-gunicorn and Flask


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a unix socket."""

    def __init__(self, path, timeout=10.0):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


class Reply:
    def __init__(self, status, pid, body):
        self.status = status
        self.pid = pid  # the worker that served the request
        self.body = body  # decoded JSON

    def __repr__(self):
        return f"Reply({self.status}, pid={self.pid}, {self.body})"


class Server:
    """gunicorn running app.py with `workers` prefork workers and --preload."""

    def __init__(self, env, workers=4, log_path=None, app="app:app"):
        self.tmp = tempfile.TemporaryDirectory(prefix="lmc-gunicorn-")
        self.sock = os.path.join(self.tmp.name, "http.sock")
        self.workers = workers
        self.log_path = log_path or os.path.join(self.tmp.name, "gunicorn.log")
        full_env = dict(os.environ)
        full_env.update(env)
        self.log = open(self.log_path, "wb")
        cmd = [
            PYTHON, "-m", "gunicorn",
            "--preload",  # the master imports the app: it opens the caches before forking
            "--workers", str(workers),
            "--bind", "unix:" + self.sock,
            "--chdir", HERE,
            "--graceful-timeout", "5",
            app,
        ]
        self.proc = subprocess.Popen(cmd, env=full_env, stdout=self.log, stderr=subprocess.STDOUT)
        self.master_pid = self.proc.pid
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=2 * workers)

    def log_text(self):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def fetch(self, path, hold=None):
        conn = UnixHTTPConnection(self.sock)
        try:
            headers = {"X-Hold": str(hold)} if hold else {}
            conn.request("GET", path, headers=headers)
            r = conn.getresponse()
            body = r.read()
            pid = int(r.getheader("X-Worker-Pid", "0"))
            return Reply(r.status, pid, json.loads(body) if r.status == 200 else body)
        finally:
            conn.close()

    def wait_ready(self, timeout=30.0):
        """Poll until every worker has answered; returns their pids."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("gunicorn exited:\n" + self.log_text())
            try:
                self.fetch("/pid")
                break
            except (OSError, http.client.HTTPException):
                if time.monotonic() > deadline:
                    raise RuntimeError("gunicorn did not start:\n" + self.log_text())
                time.sleep(0.05)
        return set(self.spread("/pid", None, deadline - time.monotonic()))

    def spread(self, path, workers, timeout=30.0, hold=0.05):
        """Request path concurrently, 2 requests per worker at a time, each
        held a little before the view runs so that one worker cannot take
        them all, until every pid in `workers` (or `self.workers` distinct
        pids when workers is None) has served it.  Returns {pid: [Reply]}."""
        deadline = time.monotonic() + timeout
        seen = {}
        while True:
            batch = list(self.pool.map(lambda _: self.fetch(path, hold), range(2 * self.workers)))
            for r in batch:
                if r.status != 200:
                    raise RuntimeError(f"{path}: {r}\n" + self.log_text())
                seen.setdefault(r.pid, []).append(r)
            done = set(seen) >= workers if workers is not None else len(seen) >= self.workers
            if done:
                return seen
            if time.monotonic() > deadline:
                raise RuntimeError(f"{path} reached only workers {sorted(seen)} of "
                                   f"{sorted(workers or [])}")

    def stop(self, timeout=15.0):
        self.pool.shutdown(wait=True)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        self.tmp.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


def run_tool(bin_dir, name, *args):
    """Run one of lmc's command-line tools; returns CompletedProcess."""
    path = os.path.join(bin_dir, name)
    return subprocess.run([path, *args], capture_output=True, text=True, timeout=30)


def tools_available(bin_dir):
    return all(os.access(os.path.join(bin_dir or "", t), os.X_OK) for t in ("lmc", "lmc-stats"))


if __name__ == "__main__":
    sys.exit("driver.py is a library; run demo_flask.py")
