#!/usr/bin/env python3
"""Self-test of the Python fixtures: start authx_app.py and flask_app.py, mint tokens with
mint.py (same secret), and check each app's status codes on a request matrix, for tokens
of its own library and of the other one.

    target/pyenv/bin/python tests/python/selftest.py [-v]

Exits 0 and prints "N passed, M failed" when everything matches the expectations below,
which record the libraries' real behaviour with the pinned versions.
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SECRET = "selftest-secret-0123456789abcdef0123456789"
VERBOSE = "-v" in sys.argv


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port, method, path, bearer=None, cookies=None, csrf=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    if bearer:
        req.add_header("Authorization", f"Bearer {bearer}")
    if cookies:
        req.add_header("Cookie", "; ".join(f"{k}={v}" for k, v in cookies.items()))
    if csrf is not None:
        req.add_header("X-CSRF-TOKEN", csrf)
    if method == "POST":
        req.data = b""
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def start(script):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, os.path.join(HERE, script), "--port", str(port), "--secret", SECRET],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 20
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{script} exited: {proc.stderr.read().decode()}")
        try:
            if request(port, "GET", "/health")[0] == 200:
                return proc, port
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"{script} did not become healthy")


def claims(tok):
    import base64

    p = tok.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))


def mint(secret):
    out = subprocess.run(
        [sys.executable, os.path.join(HERE, "mint.py"), "--secret", secret],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out)


def main():
    t = mint(SECRET)
    bad = mint("some-other-secret-0123456789abcdef0123")
    passed = failed = 0

    def check(app, port, name, want, method, path, tok=None, mode="header", csrf="claim"):
        nonlocal passed, failed
        kw = {}
        if tok is not None and mode == "header":
            kw["bearer"] = tok
        elif tok is not None:
            cookie = "refresh_token_cookie" if path == "/refresh" else "access_token_cookie"
            kw["cookies"] = {cookie: tok}
            if csrf == "claim":
                kw["csrf"] = claims(tok).get("csrf", "")
            elif csrf is not None:
                kw["csrf"] = csrf
        got, body = request(port, method, path, **kw)
        ok = got == want
        passed += ok
        failed += not ok
        if VERBOSE or not ok:
            print(f"{'ok  ' if ok else 'FAIL'} {app:5} {method:4} {path:10} {mode:6} {name:34} "
                  f"want {want} got {got} {body if not ok or VERBOSE else ''}"[:400])
        return body

    # name -> (authx app status, flask app status) for GET /protected with a Bearer header
    protected = {
        "authx_access_fresh": (200, 200), "authx_access": (200, 200),
        "authx_access_extra": (200, 200), "authx_access_scopes": (200, 200),
        "authx_access_headers_only": (200, 200),
        # AuthX: decode errors are 422; flask-jwt-extended: expired is 401
        "authx_access_expired": (422, 401),
        "authx_refresh": (401, 422),  # wrong type: AuthX 401, flask 422
        "flask_access_fresh": (200, 200), "flask_access": (200, 200),
        "flask_access_claims": (200, 200), "flask_access_headers_only": (200, 200),
        # AuthX's pydantic model wants fresh: bool -> a numeric fresh is a decode error
        "flask_access_fresh_until": (422, 200), "flask_access_fresh_until_past": (422, 200),
        "flask_access_no_exp": (200, 200),  # neither library requires exp
        "flask_access_expired": (422, 401),
        "flask_refresh": (401, 422),
    }
    fresh = {
        "authx_access_fresh": (200, 200), "authx_access": (401, 401),
        "flask_access_fresh": (200, 200), "flask_access": (401, 401),
        "flask_access_fresh_until": (422, 200), "flask_access_fresh_until_past": (422, 401),
    }
    refresh = {
        "authx_refresh": (200, 200), "flask_refresh": (200, 200),
        "authx_access": (401, 422), "flask_access": (401, 422),
    }
    for idx, (app, script) in enumerate((("authx", "authx_app.py"), ("flask", "flask_app.py"))):
        proc, port = start(script)
        try:
            check(app, port, "(none)", 401, "GET", "/protected")
            for name, want in protected.items():
                body = check(app, port, name, want[idx], "GET", "/protected", t[name])
                if want[idx] == 200 and isinstance(body, dict) and body.get("sub") != "alice":
                    failed += 1
                    print(f"FAIL {app} {name}: body {body}")
            # wrong secret: AuthX 422 (signature), flask 422
            check(app, port, "authx_access@wrong-secret", 422, "GET", "/protected", bad["authx_access"])
            check(app, port, "flask_access@wrong-secret", 422, "GET", "/protected", bad["flask_access"])
            for name, want in fresh.items():
                check(app, port, name, want[idx], "GET", "/fresh", t[name])
            for name, want in refresh.items():
                check(app, port, name, want[idx], "POST", "/refresh", t[name])
            # extra claims come back verbatim
            for name in ("authx_access_extra", "flask_access_claims"):
                body = request(port, "GET", "/protected", bearer=t[name])[1]
                ok = body["claims"].get("roles") == ["admin", "dev"]
                passed += ok
                failed += not ok
                if VERBOSE or not ok:
                    print(f"{'ok  ' if ok else 'FAIL'} {app} {name} roles round-trip: {body['claims'].get('roles')}")
            # cookie mode + CSRF (own library's and the other library's tokens)
            for lib in ("authx", "flask"):
                acc, ref = t[f"{lib}_access"], t[f"{lib}_refresh"]
                check(app, port, f"{lib}_access", 200, "GET", "/protected", acc, "cookie", csrf=None)
                check(app, port, f"{lib}_access", 200, "POST", "/protected", acc, "cookie")
                check(app, port, f"{lib}_access no-csrf", 401, "POST", "/protected", acc, "cookie", csrf=None)
                check(app, port, f"{lib}_access bad-csrf", 401, "POST", "/protected", acc, "cookie", csrf="nope")
                check(app, port, f"{lib}_access", 200, "POST", "/protected", acc, "header")
                check(app, port, f"{lib}_refresh", 200, "POST", "/refresh", ref, "cookie")
                check(app, port, f"{lib}_refresh no-csrf", 401, "POST", "/refresh", ref, "cookie", csrf=None)
            # AuthX headers-only token carries csrf "" -> unusable for cookie POSTs anywhere
            check(app, port, "authx_access_headers_only", 401, "POST", "/protected",
                  t["authx_access_headers_only"], "cookie")
        finally:
            proc.terminate()
            proc.wait(10)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
