"""make demo-http: lmc.flask.HttpCache under gunicorn with 4 prefork
workers (http_app.py), one page followed through its life, headers printed:

  1. MISS      the first request renders the page and stores it
  2. HIT       any worker serves the stored copy
  3. 304       a revalidation (If-None-Match) is answered from the stored
               validators, without the body
  4. STALE     the page expired: one worker re-renders it (held open here
     UPDATING  so you can see it), the others answer at once with the stale
               page; then the renderer answers with the new one
  5. lmc-stats shows the counts of the view.

    /usr/bin/python3 python/demo/demo_http.py     (make demo-http sets the paths)
"""
import concurrent.futures
import os
import shutil
import sys
import tempfile
import time

from driver import Server, UnixHTTPConnection, run_tool

import lmc

SHOWN = ("x-cache", "x-worker-pid", "cache-control", "age", "etag", "last-modified",
         "content-length")


def get(srv, path, headers=None):
    conn = UnixHTTPConnection(srv.sock, timeout=30)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def show(title, reply, sent=None):
    status, headers, body = reply
    print(f"\n== {title}")
    if sent:
        for k, v in sent.items():
            print(f"   > {k}: {v}")
    print(f"   HTTP {status}")
    for h in SHOWN:
        if h in headers:
            print(f"   {h}: {headers[h]}")
    print(f"   body: {body.decode()!r}")


def wait_until(cond, what, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            sys.exit(f"demo-http: timed out waiting for {what}")
        time.sleep(0.01)


def main():
    tmp = tempfile.mkdtemp(prefix="lmc-demo-http-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    path = os.path.join(tmp, "http")
    bin_dir = os.environ.get("LMC_BIN_DIR", "build/release")
    try:
        env = {"LMC_HTTP_PATH": path, "LMC_DEMO_TTL": "2", "LMC_DEMO_GRACE": "60"}
        with Server(env, app="http_app:app") as srv, \
                concurrent.futures.ThreadPoolExecutor(4) as pool:
            workers = srv.wait_ready()
            print(f"gunicorn: 4 workers {sorted(workers)}, one cache at {path}")
            print("GET /page/1: fresh for 2 s, then stale-while-revalidate for 60 s")
            c = lmc.Cache(path, create=False)
            first = get(srv, "/page/1")
            show("1. first request: rendered here", first)
            show("2. again (any worker): served from the cache", get(srv, "/page/1"))
            inm = {"If-None-Match": first[1]["etag"]}
            show("3. revalidation: 304 from the stored ETag, no body read", get(srv, "/page/1", inm),
                 inm)
            key = [k for k in c.keys(b"http/GET /page/1\0") if k.count(b"\0") == 3][0]
            print("\n   ... waiting for the page to expire (2 s TTL)")
            wait_until(lambda: c.get(key) is None, "the page to expire")
            c.set("hold/1", b"1")  # the next render waits for us
            refresher = pool.submit(get, srv, "/page/1")
            wait_until(lambda: int(c.get("exec/page/1") or 0) == 2, "the refresh to start")
            stale = [pool.submit(get, srv, "/page/1") for _ in range(3)]
            for i, f in enumerate(stale):
                show(f"4. expired, while one worker re-renders: other worker #{i + 1}", f.result(30))
            c.set("release/1/2", b"1")
            show("4. the worker that re-rendered it", refresher.result(30))
            c.delete("hold/1")
            show("5. and now, from every worker", get(srv, "/page/1"))
            # Workers add their counts every second, on their next request.
            time.sleep(1.1)
            pool.map(lambda _: get(srv, "/page/1"), range(8))
            r = run_tool(bin_dir, "lmc-stats", path)
            print("\n== lmc-stats " + path + " (the HTTP views section)")
            print("   " + r.stdout.split("# HTTP views\n")[-1].strip() if "# HTTP views" in r.stdout
                  else "   (no counts flushed yet)")
            c.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
