"""lmc.flask.HttpCache with Flask's test client: every rule of issue 12.

Expiry is real (lmc's clock): pages get TTLs of a fraction of a second and
the tests poll, against a deadline, until the cache itself says the entry
expired (a plain get misses), never a sleep that hopes.  Concurrency inside
one process uses threads blocked on events, so the order is forced.
"""
import os
import threading
from email.utils import formatdate

import pytest
from conftest import SMALL_MAP, wait_for
from flask import Flask, Response, abort, request, session

import lmc
from lmc.flask import HttpCache


class App:
    """A Flask app with an HttpCache and a counter of renders per view."""

    def __init__(self, path, **options):
        self.flask = Flask(__name__)
        self.flask.secret_key = "test"
        self.http = HttpCache(self.flask, path, map_size=SMALL_MAP, **options)
        self.runs = {}
        self.client = self.flask.test_client()

    def ran(self, name):
        self.runs[name] = self.runs.get(name, 0) + 1
        return self.runs[name]

    def page_keys(self, path="/"):
        return [k for k in self.http.cache.keys(b"http/GET " + path.encode())]


@pytest.fixture
def app(cache_path):
    a = App(cache_path)
    yield a
    a.http.cache.close()


def expire(a, path):
    """Wait until every stored page under path has passed its TTL (in lmc's
    own clock): a plain get of each headers entry misses."""
    keys = [k for k in a.page_keys(path) if k.count(b"\0") == 3]
    assert keys, f"nothing stored under {path}"
    wait_for(lambda: all(a.http.cache.get(k) is None for k in keys), what=f"{path} to expire")


# -- miss, hit, headers ------------------------------------------------------


def test_miss_then_hit_with_every_header(app):
    @app.flask.get("/p")
    @app.http.cached_response(60, grace=30)
    def p():
        return f"page {app.ran('p')}"

    r1 = app.client.get("/p")
    assert r1.status_code == 200 and r1.data == b"page 1"
    assert r1.headers["X-Cache"] == "MISS"
    r2 = app.client.get("/p")
    assert r2.data == b"page 1" and r2.headers["X-Cache"] == "HIT"
    assert app.runs["p"] == 1
    for r in (r1, r2):
        cc = [d.strip() for d in r.headers["Cache-Control"].split(",")]
        assert cc[0] == "public"
        max_age = int(cc[1].split("=")[1])
        assert 0 < max_age <= 60 and cc[1].startswith("max-age=")
        assert cc[2] == f"s-maxage={max_age}" and cc[3] == "stale-while-revalidate=30"
        assert r.headers["Age"].isdigit() and int(r.headers["Age"]) <= 60
        etag = r.headers["ETag"]
        assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/")
        assert r.headers["Last-Modified"].endswith("GMT")
        assert r.headers["Content-Type"].startswith("text/html")
    assert r1.headers["ETag"] == r2.headers["ETag"]
    # Another request method is never cached.
    assert app.client.post("/p").status_code == 405


def test_max_age_is_what_is_left_of_the_ttl(app):
    @app.flask.get("/short")
    @app.http.cached_response(0.5)
    def short():
        return "x"

    @app.flask.get("/capped")
    @app.http.cached_response(60, max_age=5)
    def capped():
        return "x"

    r = app.client.get("/short")
    assert "max-age=0," in r.headers["Cache-Control"]  # 0.5 s left, whole seconds down
    assert "stale-while-revalidate" not in r.headers["Cache-Control"]
    cc = app.client.get("/capped").headers["Cache-Control"]
    assert "max-age=5," in cc and "s-maxage=" in cc and int(cc.split("s-maxage=")[1]) > 5


# -- 304 and HEAD -------------------------------------------------------------


def conditional_app(a):
    @a.flask.get("/c")
    @a.http.cached_response(60)
    def c():
        return f"body {a.ran('c')}"

    return a.client.get("/c")


def test_if_none_match_is_answered_304_without_the_body(app):
    first = conditional_app(app)
    etag = first.headers["ETag"]
    # Remove the body entry: a 304 must not need it.
    bodies = [k for k in app.page_keys("/c") if k.count(b"\0") > 3]
    assert len(bodies) == 1 and app.http.cache.delete(bodies[0])
    r = app.client.get("/c", headers={"If-None-Match": etag})
    assert r.status_code == 304 and r.data == b""
    assert r.headers["ETag"] == etag and r.headers["X-Cache"] == "HIT"
    assert r.headers["Cache-Control"].startswith("public, max-age=")
    assert "Age" in r.headers
    assert app.runs["c"] == 1
    # Weak comparison, lists and * as RFC 9110 says for If-None-Match.
    for inm in ("W/" + etag, f'"other", {etag}', "*"):
        assert app.client.get("/c", headers={"If-None-Match": inm}).status_code == 304
    # A full answer needs the body: it is gone, so the page is rendered again.
    r = app.client.get("/c")
    assert r.status_code == 200 and r.data == b"body 2" and app.runs["c"] == 2


def test_if_modified_since(app):
    first = conditional_app(app)
    lm = first.headers["Last-Modified"]
    assert app.client.get("/c", headers={"If-Modified-Since": lm}).status_code == 304
    old = formatdate(0, usegmt=True)
    r = app.client.get("/c", headers={"If-Modified-Since": old})
    assert r.status_code == 200 and r.data == b"body 1"
    # If-None-Match wins over If-Modified-Since.
    r = app.client.get("/c", headers={"If-None-Match": '"nope"', "If-Modified-Since": lm})
    assert r.status_code == 200


@pytest.mark.parametrize("headers", [
    {"If-None-Match": 'garbage"""'},
    {"If-None-Match": ""},
    {"If-None-Match": "W/"},
    {"If-Modified-Since": "not a date"},
    {"If-Modified-Since": "Mon, 99 Foo 99999 99:99:99 GMT"},
    {"If-Modified-Since": ""},
])
def test_malformed_validators_get_the_full_page(app, headers):
    conditional_app(app)
    r = app.client.get("/c", headers=headers)
    assert r.status_code == 200 and r.data == b"body 1" and r.headers["X-Cache"] == "HIT"


def test_head_is_served_from_the_get_entry_without_the_body(app):
    @app.flask.get("/h")
    @app.http.cached_response(60)
    def h():
        n = app.ran("h")
        return "head answer" if request.method == "HEAD" else f"get answer {n}"

    # HEAD on a cold page renders without storing: the view may answer a
    # HEAD differently, and its GET entry must hold the GET page.
    r = app.client.head("/h")
    assert r.status_code == 200 and r.headers["X-Cache"] == "MISS"
    g = app.client.get("/h")
    assert g.data == b"get answer 2" and g.headers["X-Cache"] == "MISS"
    bodies = [k for k in app.page_keys("/h") if k.count(b"\0") > 3]
    assert len(bodies) == 1 and app.http.cache.delete(bodies[0])  # HEAD must not need it
    r = app.client.head("/h")
    assert r.status_code == 200 and r.data == b"" and r.headers["X-Cache"] == "HIT"
    assert r.headers["Content-Length"] == str(len(b"get answer 2"))
    assert r.headers["ETag"] == g.headers["ETag"]
    assert app.runs["h"] == 2


def test_a_304_and_a_head_copy_no_body_out_of_the_cache(app):
    """What the cache copied out for each answer (its bytes_read counter):
    a hit copies the body, a 304 and a HEAD only the page's header record,
    however large the body."""
    page = "x" * 200_000

    @app.flask.get("/big")
    @app.http.cached_response(60)
    def big():
        app.ran("big")
        return page

    etag = app.client.get("/big").headers["ETag"]
    cache = app.http.cache

    def copied(**kw):
        before = cache.stats()["bytes_read"]
        r = app.client.open("/big", **kw)
        return r, cache.stats()["bytes_read"] - before

    r, n = copied(method="GET")
    assert r.status_code == 200 and r.headers["X-Cache"] == "HIT" and n >= len(page)
    r, n = copied(method="GET", headers={"If-None-Match": etag})
    assert r.status_code == 304 and 0 < n < 2000
    r, n = copied(method="HEAD")
    assert r.status_code == 200 and r.headers["Content-Length"] == str(len(page))
    assert 0 < n < 2000
    assert app.runs["big"] == 1


def test_a_304_carries_the_validators_and_no_entity_header(app):
    """A 304 has ETag, Vary, Cache-Control, Age and X-Cache, and none of the
    headers that describe a body (RFC 9110 15.4.5), not even those an
    after_request hook adds; a Location a hook adds comes out as werkzeug
    gives it on any other response."""

    @app.flask.get("/v")
    @app.http.cached_response(60, vary=("Accept-Language",))
    def v():
        return "page"

    hooked = {}

    @app.flask.after_request
    def hook(resp):
        for k, val in hooked.items():
            resp.headers[k] = val
        return resp

    etag = app.client.get("/v").headers["ETag"]
    r = app.client.get("/v", headers={"If-None-Match": etag})
    assert r.status_code == 304 and r.data == b""
    assert r.headers["ETag"] == etag and r.headers["Vary"] == "Accept-Language"
    assert {"Cache-Control", "Age", "X-Cache"} <= set(r.headers.keys())
    for h in ("Content-Type", "Content-Length", "Last-Modified", "Content-Encoding"):
        assert h not in r.headers, h
    hooked.update({"Content-Type": "text/plain", "Content-Language": "fr", "X-Hook": "1",
                   "Expires": "Thu, 01 Jan 1970 00:00:00 GMT", "Location": "/elsewhere"})
    r = app.client.get("/v", headers={"If-None-Match": etag})
    assert r.status_code == 304
    assert "Content-Type" not in r.headers and "Content-Language" not in r.headers
    assert r.headers["X-Hook"] == "1" and r.headers["Expires"].startswith("Thu, 01 Jan 1970")
    assert r.headers["Location"] == app.client.get("/v").headers["Location"]


# -- what is never stored or replayed ----------------------------------------


def test_set_cookie_is_never_replayed(app):
    """Flask-Caching 2.0.2 serves alice's Set-Cookie to bob; here bob gets
    the page without it, and alice got her own cookie."""

    @app.flask.get("/resp")
    @app.http.cached_response(60, query=())
    def resp():
        u = request.args.get("u", "")
        r = Response(f"hello {app.ran('resp')}")
        r.set_cookie("who", u)
        r.headers["X-Computed-For"] = u
        return r

    alice = app.client.get("/resp?u=alice")
    assert alice.headers["X-Cache"] == "MISS"
    assert alice.headers.getlist("Set-Cookie") == ["who=alice; Path=/"]
    assert alice.headers["X-Computed-For"] == "alice"
    bob = app.flask.test_client().get("/resp?u=bob")
    assert bob.headers["X-Cache"] == "HIT" and bob.data == b"hello 1"
    assert "Set-Cookie" not in bob.headers and "X-Computed-For" not in bob.headers
    raw = b"".join(app.http.cache.get(k) or b"" for k in app.page_keys("/resp"))
    assert b"alice" not in raw


def test_session_touching_responses_are_not_stored(app):
    @app.flask.get("/s")
    @app.http.cached_response(60)
    def s():
        return f"hello {session.get('user', 'nobody')} {app.ran('s')}"

    for n in (1, 2):
        r = app.client.get("/s")
        assert r.data == f"hello nobody {n}".encode() and r.headers["X-Cache"] == "MISS"
        assert "private" in r.headers["Cache-Control"]
    assert app.page_keys("/s") == []


def test_session_set_before_the_view_also_counts(app):
    @app.flask.before_request
    def touch():
        session.get("x")

    @app.flask.get("/t")
    @app.http.cached_response(60)
    def t():
        return "t"

    app.client.get("/t")
    assert app.page_keys("/t") == []


def test_per_user_pages_are_private_and_isolated(app):
    @app.flask.get("/login/<name>")
    def login(name):
        session["user"] = name
        return "ok"

    @app.flask.get("/me")
    @app.http.cached_response(60, per_user=lambda: session.get("user"))
    def me():
        return f"page of {session.get('user', 'anonymous')} {app.ran('me')}"

    alice, bob, anon = (app.flask.test_client() for _ in range(3))
    alice.get("/login/alice")
    bob.get("/login/bob")
    a1 = alice.get("/me")
    b1 = bob.get("/me")
    assert a1.data == b"page of alice 1" and b1.data == b"page of bob 2"
    a2, b2 = alice.get("/me"), bob.get("/me")
    assert (a2.data, a2.headers["X-Cache"]) == (b"page of alice 1", "HIT")
    assert (b2.data, b2.headers["X-Cache"]) == (b"page of bob 2", "HIT")
    for r in (a1, a2, b1, b2):
        assert r.headers["Cache-Control"].startswith("private, max-age=")
        assert "s-maxage" not in r.headers["Cache-Control"]
        assert "Cookie" in r.headers["Vary"]
    # The anonymous page (per_user gave None) is shared and public.
    n1 = anon.get("/me")
    n2 = app.flask.test_client().get("/me")
    assert n1.data == n2.data == b"page of anonymous 3" and n2.headers["X-Cache"] == "HIT"
    assert n2.headers["Cache-Control"].startswith("public")
    # One user's pages go with invalidate_user, whatever their query.
    assert alice.get("/me?b=1").data == b"page of alice 4"
    assert app.http.invalidate_user("alice") == 4
    assert alice.get("/me").data == b"page of alice 5"
    assert bob.get("/me").headers["X-Cache"] == "HIT"


def test_authorization_without_a_user_is_not_stored(app):
    @app.flask.get("/auth")
    @app.http.cached_response(60)
    def auth():
        return f"secret {app.ran('auth')}"

    app.client.get("/auth", headers={"Authorization": "Basic YTpi"})
    assert app.page_keys("/auth") == []


def test_vary_headers_select_variants(app):
    @app.flask.get("/v")
    @app.http.cached_response(60, vary=("Accept-Language",))
    def v():
        return f"{request.headers.get('Accept-Language', 'none')} {app.ran('v')}"

    @app.flask.get("/ua")
    @app.http.cached_response(60)
    def ua():
        r = Response(request.headers.get("User-Agent", ""))
        r.vary.add("User-Agent")  # not in vary=: cannot be keyed, not stored
        return r

    en = app.client.get("/v", headers={"Accept-Language": "en"})
    fr = app.client.get("/v", headers={"Accept-Language": "fr"})
    assert (en.data, fr.data) == (b"en 1", b"fr 2")
    assert app.client.get("/v", headers={"Accept-Language": "en"}).data == b"en 1"
    assert app.client.get("/v", headers={"Accept-Language": "fr"}).data == b"fr 2"
    assert app.client.get("/v").data == b"none 3"
    assert en.headers["Vary"] == "Accept-Language"

    app.client.get("/ua")
    assert app.page_keys("/ua") == []
    with pytest.raises(ValueError):
        app.http.cached_response(60, vary=("Cookie",))


def test_query_is_sorted_and_allow_listed(app):
    @app.flask.get("/all")
    @app.http.cached_response(60)
    def all_args():
        return f"{sorted(request.args.items(multi=True))} {app.ran('all')}"

    @app.flask.get("/some")
    @app.http.cached_response(60, query=("page",))
    def some():
        return f"page {request.args.get('page')} {app.ran('some')}"

    a = app.client.get("/all?b=2&a=1")
    assert app.client.get("/all?a=1&b=2").data == a.data
    assert app.client.get("/all?a=1&b=3").data != a.data
    assert app.client.get("/all?a=1").data != a.data
    assert app.runs["all"] == 3
    s = app.client.get("/some?page=1&utm_source=x")
    assert app.client.get("/some?utm_source=y&page=1").data == s.data
    assert app.client.get("/some?page=1").headers["X-Cache"] == "HIT"
    assert app.client.get("/some?page=2").data == b"page 2 2"


def test_invalidate_path_removes_every_variant(app):
    @app.flask.get("/items/<int:n>")
    @app.http.cached_response(60, vary=("Accept",))
    def item(n):
        return f"item {n} {app.ran('item')}"

    @app.flask.get("/itemsx")
    @app.http.cached_response(60)
    def other():
        return "other"

    for path in ("/items/1", "/items/1?x=1", "/items/2?b=1&a=2", "/items/10"):
        for accept in ("text/html", "application/json"):
            app.client.get(path, headers={"Accept": accept})
    app.client.head("/items/1")
    app.client.get("/itemsx")
    assert len(app.page_keys("/items/")) == 16  # 8 pages, headers + body each
    assert app.http.invalidate_path("/items/1", exact=True) == 8
    assert app.client.get("/items/10", headers={"Accept": "text/html"}).headers["X-Cache"] == "HIT"
    assert app.http.invalidate_path("/items/") == 8
    assert app.page_keys("/items/") == []
    assert app.client.get("/itemsx").headers["X-Cache"] == "HIT"
    r = app.client.get("/items/1?x=1", headers={"Accept": "text/html"})
    assert r.headers["X-Cache"] == "MISS"


def test_an_invalidation_during_a_render_is_not_overwritten(app):
    @app.flask.get("/race")
    @app.http.cached_response(60)
    def race():
        app.http.invalidate_path("/race")  # the data changed while rendering
        return f"old {app.ran('race')}"

    r = app.client.get("/race")
    assert r.status_code == 200 and r.data == b"old 1"
    assert app.page_keys("/race") == []


# -- statuses, errors, odd responses -----------------------------------------


def test_statuses_allow_list_and_short_404(cache_path):
    a = App(cache_path, error_timeout=0.3)

    @a.flask.get("/st/<int:code>")
    @a.http.cached_response(60)
    def st(code):
        n = a.ran(f"st{code}")
        if code == 404:
            abort(404)  # an HTTPException is a response like any other
        if code == 302:
            return "", 302, {"Location": "/elsewhere"}
        return f"status {code} {n}", code

    @a.flask.errorhandler(404)
    def not_found(e):
        return "custom not found", 404

    for code in (500, 302, 403, 201):
        for _ in range(2):
            r = a.client.get(f"/st/{code}")
            assert r.status_code == code and r.headers["X-Cache"] == "MISS"
        assert a.runs[f"st{code}"] == 2 and a.page_keys(f"/st/{code}") == []
    r = a.client.get("/st/404")
    assert (r.status_code, r.data) == (404, b"custom not found")
    r = a.client.get("/st/404")
    assert r.status_code == 404 and r.headers["X-Cache"] == "HIT" and r.data == b"custom not found"
    assert "max-age=0," in r.headers["Cache-Control"]
    assert a.client.get("/st/200").headers["X-Cache"] == "MISS"
    expire(a, "/st/404")
    assert a.client.get("/st/200").headers["X-Cache"] == "HIT"  # 60 s, still there
    assert a.client.get("/st/404").headers["X-Cache"] == "MISS" and a.runs["st404"] == 2
    # A 404 is not answered 304.
    r = a.client.get("/st/404", headers={"If-None-Match": "*"})
    assert r.status_code == 404
    a.http.cache.close()


def test_streamed_responses_are_never_stored(app):
    @app.flask.get("/stream")
    @app.http.cached_response(60)
    def stream():
        app.ran("stream")
        return Response((b"chunk %d\n" % i for i in range(3)))

    for _ in range(2):
        r = app.client.get("/stream")
        assert r.data == b"chunk 0\nchunk 1\nchunk 2\n" and r.headers["X-Cache"] == "MISS"
    assert app.runs["stream"] == 2 and app.page_keys("/stream") == []


def test_no_store_from_the_view_is_respected(app):
    @app.flask.get("/ns")
    @app.http.cached_response(60)
    def ns():
        r = Response("x")
        r.cache_control.no_store = True
        return r

    r = app.client.get("/ns")
    assert r.headers["Cache-Control"] == "no-store" and app.page_keys("/ns") == []


def test_a_view_that_raises(app):
    app.flask.config["PROPAGATE_EXCEPTIONS"] = False

    @app.flask.get("/boom")
    @app.http.cached_response(60)
    def boom():
        app.ran("boom")
        raise RuntimeError("boom")

    assert app.client.get("/boom").status_code == 500
    assert app.client.get("/boom").status_code == 500
    assert app.runs["boom"] == 2 and app.page_keys("/boom") == []


def test_a_failing_render_keeps_the_stale_page(app):
    app.flask.config["PROPAGATE_EXCEPTIONS"] = False
    mode = {"fail": None}

    @app.flask.get("/sw")
    @app.http.cached_response(0.3, grace=60)
    def sw():
        n = app.ran("sw")
        if mode["fail"] == "raise":
            raise RuntimeError("backend down")
        if mode["fail"] == "500":
            return "error page", 500
        if mode["fail"] == "403":
            return "forbidden", 403
        return f"page {n}"

    assert app.client.get("/sw").data == b"page 1"
    expire(app, "/sw")
    for fail in ("raise", "500"):
        mode["fail"] = fail
        r = app.client.get("/sw")
        assert (r.status_code, r.data, r.headers["X-Cache"]) == (200, b"page 1", "STALE")
        assert "max-age=0," in r.headers["Cache-Control"]
        assert int(r.headers["Age"]) >= 0
    mode["fail"] = "403"  # a status not stored: passed on, the stale page stays
    r = app.client.get("/sw")
    assert (r.status_code, r.headers["X-Cache"]) == (403, "MISS")
    mode["fail"] = None
    r = app.client.get("/sw")
    assert (r.data, r.headers["X-Cache"]) == (b"page 5", "UPDATING")
    assert app.client.get("/sw").headers["X-Cache"] == "HIT"


def test_odd_paths_and_huge_queries(app):
    @app.flask.get("/odd/<path:rest>")
    @app.http.cached_response(60)
    def odd(rest):
        return f"{rest} {app.ran('odd')}"

    r = app.client.get("/odd/caf%C3%A9")
    assert r.data == "café 1".encode()
    assert app.client.get("/odd/café").headers["X-Cache"] == "HIT"
    assert app.client.get("/odd/a%00b").data == "a\0b 2".encode()
    assert app.client.get("/odd/a%00b").headers["X-Cache"] == "HIT"
    assert app.client.get("/odd/a").data == b"a 3"
    assert app.client.get("/odd/%FF%FE").status_code == 200
    assert app.http.invalidate_path("/odd/café") == 2
    huge = "q=" + "x" * 100_000
    for _ in range(2):
        r = app.client.get("/odd/big?" + huge)
        assert r.status_code == 200 and r.headers["X-Cache"] == "MISS"
    assert app.runs["odd"] == 6


def test_a_body_larger_than_the_cache(app):
    @app.flask.get("/huge")
    @app.http.cached_response(60)
    def huge():
        app.ran("huge")
        return b"x" * (SMALL_MAP * 2)

    for _ in range(2):
        r = app.client.get("/huge")
        assert r.status_code == 200 and len(r.data) == SMALL_MAP * 2
        assert r.headers["X-Cache"] == "MISS"
    assert app.runs["huge"] == 2 and app.page_keys("/huge") == []


# -- leases: one render, the others wait or get the stale page ---------------


def test_concurrent_misses_render_once(app):
    entered, release = threading.Event(), threading.Event()

    @app.flask.get("/slow")
    @app.http.cached_response(60)
    def slow():
        n = app.ran("slow")
        entered.set()
        assert release.wait(10)
        return f"slow {n}"

    results = []
    asking = []
    real = app.http._get_lease

    def counted(*a, **kw):  # how many requests are in get_lease
        asking.append(1)
        return real(*a, **kw)

    app.http._get_lease = counted

    def get():
        r = app.flask.test_client().get("/slow")
        results.append((r.data, r.headers["X-Cache"]))

    first = threading.Thread(target=get)
    first.start()
    assert entered.wait(10)
    others = [threading.Thread(target=get) for _ in range(3)]
    for t in others:
        t.start()
    waits = app.http.cache.stats()["lease_waits"]
    wait_for(lambda: len(asking) == 4, what="the other requests to ask for the page")
    release.set()
    for t in [first, *others]:
        t.join(10)
    assert app.runs["slow"] == 1
    # The others were in get_lease before the release; at least one of them
    # was provably asleep waiting for the holder's fill (a thread can still
    # be between the count above and lmc's wait when the fill lands, and
    # then finds the page: also no second render).  test_http_gunicorn.py
    # shows all three waiting, across processes.
    assert app.http.cache.stats()["lease_waits"] - waits >= 1
    assert sorted(results) == [(b"slow 1", "HIT")] * 3 + [(b"slow 1", "MISS")]


def test_expired_page_one_renders_the_others_get_it_stale(app):
    entered, release = threading.Event(), threading.Event()
    block = {"on": False}

    @app.flask.get("/swr")
    @app.http.cached_response(0.3, grace=60)
    def swr():
        n = app.ran("swr")
        if block["on"]:
            entered.set()
            assert release.wait(10)
        return f"swr {n}"

    assert app.client.get("/swr").data == b"swr 1"
    expire(app, "/swr")
    block["on"] = True
    out = {}

    def refresher():
        r = app.flask.test_client().get("/swr")
        out["r"] = (r.data, r.headers["X-Cache"])

    t = threading.Thread(target=refresher)
    t.start()
    assert entered.wait(10)
    # While the render is blocked, every other request is answered at once
    # with the stale page.
    for _ in range(3):
        r = app.client.get("/swr")
        assert (r.data, r.headers["X-Cache"]) == (b"swr 1", "STALE")
    assert "r" not in out
    release.set()
    t.join(10)
    assert out["r"] == (b"swr 2", "UPDATING")
    assert app.client.get("/swr").headers["X-Cache"] == "HIT"
    assert app.runs["swr"] == 2


# -- counters, setup ----------------------------------------------------------


def test_per_view_counters(cache_path):
    app = App(cache_path, stats_interval=3600)
    conditional_app(app)  # one miss
    etag = app.client.get("/c").headers["ETag"]
    app.client.get("/c", headers={"If-None-Match": etag})
    app.http.flush_stats()
    other = HttpCache(cache=app.http.cache)  # another worker's view of them
    st = other.stats()["c"]
    assert (st["miss"], st["hit"], st["not_modified"]) == (1, 2, 1)
    # Counting costs no write per request: nothing moves until a flush.
    before = app.http.cache.stats()
    for _ in range(20):
        assert app.client.get("/c").headers["X-Cache"] == "HIT"
    after = app.http.cache.stats()
    assert (after["sets"], after["incrs"]) == (before["sets"], before["incrs"])
    assert app.http.stats()["c"]["hit"] == 22  # the pending counts are seen
    app.http.flush_stats()
    assert other.stats()["c"]["hit"] == 22
    app.http.cache.close()


def test_init_app_config_and_flask_caching(tmpdir_shm):
    app = Flask(__name__)
    app.config["LMC_HTTP_PATH"] = os.path.join(tmpdir_shm, "http")
    app.config["LMC_HTTP_MAP_SIZE"] = SMALL_MAP
    http = HttpCache()

    @app.get("/x")
    @http.cached_response(60)
    def x():
        return "x"

    http.init_app(app)
    c = app.test_client()
    assert c.get("/x").headers["X-Cache"] == "MISS"
    assert c.get("/x").headers["X-Cache"] == "HIT"
    assert os.path.isdir(app.config["LMC_HTTP_PATH"])

    # With Flask-Caching's Cache object: one lmc handle for both.
    from flask_caching import Cache

    app2 = Flask(__name__)
    app2.config.update(CACHE_TYPE="lmc.flask_caching.LmcCache",
                       CACHE_LMC_PATH=os.path.join(tmpdir_shm, "fc"),
                       CACHE_LMC_MAP_SIZE=SMALL_MAP)
    fc = Cache(app2)
    http2 = HttpCache(app2, cache=fc)
    assert http2.cache is fc.cache.lmc
    with pytest.raises(ValueError):
        HttpCache(Flask(__name__))
    with pytest.raises(TypeError):
        HttpCache(cache=object())
    with pytest.raises(ValueError):
        http.cached_response(0)
    assert isinstance(http.cache, lmc.Cache)


def test_lmc_stats_shows_the_views(cache_path, bin_dir):
    from driver import run_tool, tools_available

    if not tools_available(bin_dir):
        pytest.skip(f"the lmc tools are not built in {bin_dir} (make all)")
    app = App(cache_path, stats_interval=3600)
    def odd_name():
        return "x"

    # An endpoint name that needs escaping in every format.
    app.flask.add_url_rule("/odd", endpoint='we"ird\\',
                           view_func=app.http.cached_response(60)(odd_name))
    first = conditional_app(app)  # endpoint "c": one miss
    app.client.get("/c")
    app.client.get("/c", headers={"If-None-Match": first.headers["ETag"]})

    app.client.get("/odd")
    app.http.flush_stats()

    r = run_tool(bin_dir, "lmc-stats", cache_path, "--json")
    assert r.returncode == 0, r.stderr
    import json

    views = json.loads(r.stdout)["http_views"]
    assert views["c"] == {"hit": 2, "miss": 1, "stale": 0, "updating": 0, "not_modified": 1,
                          "uncached": 0, "hit_ratio": pytest.approx(2 / 3, abs=1e-5)}
    assert views['we"ird\\']["miss"] == 1

    r = run_tool(bin_dir, "lmc-stats", cache_path, "--prometheus")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert f'lmc_http_responses_total{{path="{cache_path}",endpoint="c",x_cache="hit"}} 2' in lines
    assert f'lmc_http_not_modified_total{{path="{cache_path}",endpoint="c"}} 1' in lines
    assert (f'lmc_http_responses_total{{path="{cache_path}",endpoint="we\\"ird\\\\",'
            'x_cache="miss"} 1') in lines
    promcheck = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "tools", "promcheck.py")
    import subprocess
    import sys

    prom = cache_path + ".prom"
    with open(prom, "w") as f:
        f.write(r.stdout)
    chk = subprocess.run([sys.executable, promcheck, prom], capture_output=True, text=True)
    assert chk.returncode == 0, chk.stderr

    r = run_tool(bin_dir, "lmc-stats", cache_path)
    assert r.returncode == 0, r.stderr
    text = r.stdout.split("# HTTP views\n")[1].splitlines()
    assert ("c:hit=2 miss=1 stale=0 updating=0 not_modified=1 uncached=0 "
            "hit_ratio=0.666667") in text
    app.http.cache.close()


def test_the_views_own_cache_control_bounds_and_joins(app):
    @app.flask.get("/own")
    @app.http.cached_response(60)
    def own():
        r = Response("own")
        r.cache_control.max_age = 5
        r.cache_control.must_revalidate = True
        return r

    for xc in ("MISS", "HIT"):
        r = app.client.get("/own")
        assert r.headers["X-Cache"] == xc
        cc = [d.strip() for d in r.headers["Cache-Control"].split(",")]
        assert cc[:3] == ["public", "max-age=5", "s-maxage=5"] and "must-revalidate" in cc


def test_a_foreign_record_is_a_miss_not_a_500(app):
    @app.flask.get("/f")
    @app.http.cached_response(60)
    def f():
        return f"f {app.ran('f')}"

    app.client.get("/f")
    head = [k for k in app.page_keys("/f") if k.count(b"\0") == 3][0]
    for junk in (b"not json", b"[2, 1]", b'{"v": 1}', b"[2" + b",1" * 11 + b"]"):
        app.http.cache.set(head, junk)
        r = app.client.get("/f")
        assert r.status_code == 200 and r.data.startswith(b"f ")
        assert app.http.cache.get(head) is None  # dropped, so that the next one refills
    assert app.client.get("/f").headers["X-Cache"] == "MISS"
    assert app.client.get("/f").headers["X-Cache"] == "HIT"


def test_the_example_app(tmpdir_shm, monkeypatch):
    import importlib.util

    monkeypatch.setenv("LMC_HTTP_PATH", os.path.join(tmpdir_shm, "example"))
    path = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "flask_http_cache.py")
    spec = importlib.util.spec_from_file_location("flask_http_cache_example", path)
    ex = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ex)
    c = ex.app.test_client()
    assert c.get("/items/3").headers["X-Cache"] == "MISS"
    r = c.get("/items/3")
    assert r.headers["X-Cache"] == "HIT" and b"item 3" in r.data
    assert c.get("/items/3", headers={"If-None-Match": r.headers["ETag"]}).status_code == 304
    assert c.post("/items/3", data={"name": "new name"}).status_code == 204
    r = c.get("/items/3")
    assert r.headers["X-Cache"] == "MISS" and b"new name" in r.data
    assert c.get("/items/99").status_code == 404
    assert ex.app.test_client().get("/stats").json["item"]["hit"] >= 1
    ex.http.cache.close()
