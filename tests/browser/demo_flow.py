#!/usr/bin/env python3
"""Real-browser end-to-end test of `jwtgate demo` (README "Testing").

Headless Chromium logs in through the demo, lets the access token expire,
reloads a protected page and calls the API through the gateway, and must
never see a 401: the gateway refreshes the session silently and rotates the
cookies. Then the fresh-only page sends it back to log in, logging in again
opens it, and logging out ends the session.

    python tests/browser/demo_flow.py path/to/jwtgate [--out DIR]

Needs the Playwright client and Debian's chromium: scripts/browser-env.sh
installs both and prints JWTGATE_PYTHON / JWTGATE_CHROMIUM. Screenshots and
the demo's log go to target/browser/ (DIR). Exits non-zero with a message on
the first failed check; prints `N passed, 0 failed` when all pass. The demo
process is killed on every exit path.
"""

import argparse
import base64
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from urllib.parse import urlsplit

try:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright
except ImportError as e:  # fail loudly: the test command installs this
    sys.exit(
        f"demo_flow.py: error: cannot import playwright ({e}); run it with the venv python "
        "that scripts/browser-env.sh prints (JWTGATE_PYTHON)"
    )

ROOT = Path(__file__).resolve().parents[2]
ACCESS_TTL = "3s"
# Flags Chromium needs on a closed network: without the background-networking
# ones it keeps dialling Google services. Playwright adds --headless and
# --user-data-dir (a fresh temporary profile, below).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 10_000


class CheckFailed(Exception):
    pass


class Checks:
    def __init__(self):
        self.passed = 0

    def ok(self, cond, what, detail=""):
        if not cond:
            raise CheckFailed(what + (f" -- {detail}" if detail else ""))
        self.passed += 1
        print(f"ok {self.passed:2} - {what}", flush=True)


class Demo:
    """`jwtgate demo` on a free port; stdout and stderr go to a log file."""

    def __init__(self, binary, log_path):
        self.log_path = log_path
        self.log = open(log_path, "w", encoding="utf-8", errors="replace")
        self.lines = queue.Queue()
        self.proc = subprocess.Popen(
            [binary, "demo", "--listen", "127.0.0.1:0", "--access-ttl", ACCESS_TTL],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            start_new_session=True,  # its own process group: stop() kills it all
        )
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for line in self.proc.stdout:
            self.log.write(line)
            self.log.flush()
            self.lines.put(line)
        self.lines.put(None)

    def url(self, timeout=30):
        """The base URL from `jwtgate demo: open http://127.0.0.1:PORT/ ...`."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CheckFailed(f"the demo printed no URL within {timeout}s")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise CheckFailed(f"the demo exited with status {self.proc.wait()} before printing its URL")
            m = re.search(r"open (http://[^\s/]+/)", line)
            if m:
                return m.group(1)

    def tail(self, n=25):
        try:
            return "".join(Path(self.log_path).read_text(errors="replace").splitlines(True)[-n:])
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
        self.log.close()


def jwt_claims(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def cookie_jar(ctx):
    return {c["name"]: c for c in ctx.cookies()}


def wait_until_expired(claims):
    """Poll the clock until the gateway (whole-second clock) must see `exp`
    as past: now >= exp + 1. Returns the seconds waited since `iat`."""
    target = claims["exp"] + 1
    while (left := target - time.time()) > 0:
        time.sleep(min(left, 0.1))
    return time.time() - claims["iat"]


def identity(page):
    """The identity block the demo app renders from the forwarded headers."""
    return page.inner_text("pre:not(#out)")


def path_of(url):
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def run(binary, chromium, out_dir, t):
    out_dir.mkdir(parents=True, exist_ok=True)
    demo = Demo(binary, out_dir / "demo.log")
    profile = tempfile.mkdtemp(prefix="jwtgate-chromium-")
    page = None
    seen = []  # (status, method, path) of every response the page saw
    page_errors = []
    failed_requests = []
    try:
        base = demo.url()
        t.ok(base.startswith("http://127.0.0.1:"), f"the demo serves {base}")
        with sync_playwright() as pw:
            ctx = pw.chromium.launch_persistent_context(
                profile,
                executable_path=chromium,
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 900, "height": 700},
            )
            ctx.set_default_timeout(TIMEOUT_MS)
            page = ctx.pages[0] if ctx.pages else ctx.new_page()
            page.on("response", lambda r: seen.append((r.status, r.request.method, path_of(r.url))))
            page.on("pageerror", lambda e: page_errors.append(str(e)))
            page.on("requestfailed", lambda r: failed_requests.append(f"{r.method} {r.url}: {r.failure}"))
            try:
                flow(page, ctx, base, out_dir, t, seen)
                t.ok(
                    not [s for s in seen if s[0] == 401],
                    f"no 401 in any of the {len(seen)} responses the browser saw",
                    str([s for s in seen if s[0] == 401]),
                )
                t.ok(not [s for s in seen if s[0] >= 500], "no 5xx response", str([s for s in seen if s[0] >= 500]))
                t.ok(not page_errors and not failed_requests, "no script error, no failed request",
                     f"errors {page_errors}, failed {failed_requests}")
                page.screenshot(path=str(out_dir / "demo-flow-end.png"), full_page=True)
            except BaseException:
                try:
                    page.screenshot(path=str(out_dir / "failure.png"), full_page=True)
                    print(f"demo_flow.py: page at failure: {page.url} (screenshot {out_dir / 'failure.png'})",
                          file=sys.stderr)
                except PlaywrightError:
                    pass
                raise
            finally:
                ctx.close()
    except BaseException:
        print("demo_flow.py: responses seen (status method path):", file=sys.stderr)
        for s in seen[-30:]:
            print(f"  {s[0]} {s[1]} {s[2]}", file=sys.stderr)
        print(f"demo_flow.py: last lines of {demo.log_path}:\n{demo.tail()}", file=sys.stderr)
        raise
    finally:
        demo.stop()
        shutil.rmtree(profile, ignore_errors=True)


def flow(page, ctx, base, out_dir, t, seen):
    def saw(status, method, path):
        return (status, method, path) in seen

    # --- public page, then the login form ------------------------------
    resp = page.goto(base)
    t.ok(resp.status == 200 and page.inner_text("h1") == "jwtgate demo", "the public page / opens without a session",
         f"status {resp.status}, h1 {page.inner_text('h1')!r}")
    page.click("a[href='/login']")
    page.wait_for_url(base + "login")
    t.ok(page.inner_text("h1") == "Log in", "the home page links to the login form")

    # --- log in: 303 to /protected, a fresh session in four cookies -----
    page.fill("input[name=username]", "test")
    page.fill("input[name=password]", "test")
    with page.expect_navigation():
        page.click("#submit")
    t.ok(page.url == base + "protected", "logging in as test/test lands on /protected", page.url)
    t.ok(saw(303, "POST", "/login"), "the login POST answered 303 (the demo app's redirect)", str(seen))
    who = identity(page)
    t.ok("X-Auth-Subject: test" in who and "X-Auth-Name: Test User" in who,
         "the app sees X-Auth-Subject: test and X-Auth-Name: Test User", who)
    t.ok("X-Auth-Fresh: true" in who, "right after login the token is fresh (X-Auth-Fresh: true)", who)
    jar = cookie_jar(ctx)
    names = {"access_token_cookie", "refresh_token_cookie", "csrf_access_token", "csrf_refresh_token"}
    t.ok(names <= jar.keys(), "the session is four cookies", str(sorted(jar)))
    t.ok(jar["access_token_cookie"]["httpOnly"] and jar["refresh_token_cookie"]["httpOnly"]
         and not jar["csrf_access_token"]["httpOnly"], "the tokens are HttpOnly, the CSRF value is readable")
    script_sees = page.evaluate("document.cookie")
    t.ok("token_cookie" not in script_sees and "csrf_access_token=" in script_sees,
         "page script reads the CSRF cookie but no token", script_sees)
    access1 = jar["access_token_cookie"]["value"]
    refresh1 = jar["refresh_token_cookie"]["value"]
    claims1 = jwt_claims(access1)
    t.ok(claims1["sub"] == "test" and claims1["fresh"] is True and claims1["exp"] - claims1["iat"] == 3,
         "the access token is test's, fresh, and lives 3 s", str(claims1))

    # --- let it expire, reload: silent refresh, no 401 ------------------
    waited = wait_until_expired(claims1)
    jar = cookie_jar(ctx)
    t.ok(jar.get("access_token_cookie", {}).get("value") == access1,
         f"after {waited:.1f} s the browser still holds the now expired access token (exp {claims1['exp']})")
    resp = page.reload()
    t.ok(resp.status == 200 and page.url == base + "protected",
         "reloading /protected with the expired token answers 200", f"status {resp.status}, url {page.url}")
    who = identity(page)
    t.ok("X-Auth-Subject: test" in who and "X-Auth-Fresh: false" in who,
         "the app still sees test, now X-Auth-Fresh: false (a refreshed token)", who)
    jar = cookie_jar(ctx)
    access2 = jar["access_token_cookie"]["value"]
    claims2 = jwt_claims(access2)
    t.ok(access2 != access1 and jar["refresh_token_cookie"]["value"] != refresh1,
         "the access and refresh cookies rotated silently")
    t.ok(claims2["fresh"] is False and claims2["exp"] > claims1["exp"] and claims2["fid"] == claims1["fid"],
         "the new access token is non-fresh, later, same session family", str(claims2))

    # --- expire again, then the API call from page script ---------------
    waited = wait_until_expired(claims2)
    t.ok(cookie_jar(ctx)["access_token_cookie"]["value"] == access2,
         f"after {waited:.1f} s more the access token has expired again")
    page.click("#api")
    page.wait_for_function("document.getElementById('out').textContent !== ''")
    out = page.inner_text("#out")
    status, _, body = out.partition(" ")
    try:
        api = json.loads(body)
    except ValueError:
        api = None
    t.ok(status == "200" and api == {"sub": "test", "fresh": "false"},
         'clicking #api shows 200 {"sub":"test","fresh":"false"}', out)
    t.ok(saw(200, "GET", "/api/whoami"), "the fetch of /api/whoami answered 200", str(seen))
    access3 = cookie_jar(ctx)["access_token_cookie"]["value"]
    t.ok(access3 != access2, "the API call rotated the access cookie again")
    page.screenshot(path=str(out_dir / "protected-after-api.png"), full_page=True)

    # --- the fresh-only page: back to the login form, log in again ------
    page.goto(base + "account")
    t.ok(saw(303, "GET", "/account"), "/account with a refreshed (non-fresh) token answers 303", str(seen))
    t.ok(page.url == base + "login?next=%2Faccount" and page.inner_text("h1") == "Log in",
         "the browser ends on the login form with next=%2Faccount", page.url)
    page.fill("input[name=password]", "test")
    with page.expect_navigation():
        page.click("#submit")
    t.ok(page.url == base + "account", "logging in again goes to /account", page.url)
    body = page.inner_text("body")
    t.ok(page.inner_text("h1") == "Account (fresh login only)" and "X-Auth-Fresh: true" in body,
         "the account page opens with X-Auth-Fresh: true", body)

    # --- log out: cookies gone, /protected sends to the login form ------
    page.goto(base + "protected")
    t.ok("X-Auth-Fresh: true" in identity(page), "/protected opens on the new session")
    with page.expect_navigation(url=base):
        page.click("#logout")
    t.ok(saw(204, "POST", "/logout"), "#logout posted /logout and got 204", str(seen))
    t.ok(page.url == base and page.inner_text("h1") == "jwtgate demo", "after logout the browser is on /", page.url)
    left = names & cookie_jar(ctx).keys()
    t.ok(not left, "logout cleared all four cookies", str(sorted(left)))
    page.goto(base + "protected")
    t.ok(saw(303, "GET", "/protected") and page.url == base + "login?next=%2Fprotected",
         "/protected now redirects to /login?next=%2Fprotected", page.url)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("jwtgate", help="path of the jwtgate binary (target/debug/jwtgate)")
    ap.add_argument("--chromium", default=os.environ.get("JWTGATE_CHROMIUM", "/usr/bin/chromium"),
                    help="browser binary (default $JWTGATE_CHROMIUM or /usr/bin/chromium)")
    ap.add_argument("--out", type=Path, default=ROOT / "target" / "browser",
                    help="screenshots and demo log (default target/browser)")
    args = ap.parse_args()
    for what, path in (("jwtgate binary", args.jwtgate), ("chromium", args.chromium)):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            sys.exit(f"demo_flow.py: error: {what} {path!r} is not an executable file"
                     + (" (run scripts/browser-env.sh)" if what == "chromium" else " (cargo build --bin jwtgate)"))

    # A SIGTERM (a CI timeout) must still run the cleanup that kills the demo.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    t = Checks()
    started = time.monotonic()
    try:
        run(args.jwtgate, args.chromium, args.out, t)
    except Exception as e:  # a check, a Playwright timeout, or a bug here: all fail the run
        if not isinstance(e, (CheckFailed, PlaywrightError, OSError)):
            traceback.print_exc()
        print(f"FAILED check {t.passed + 1}: {e}", file=sys.stderr)
        print(f"{t.passed} passed, 1 failed")
        sys.exit(1)
    print(f"demo_flow.py: {time.monotonic() - started:.1f} s; screenshots in {args.out}", file=sys.stderr)
    print(f"{t.passed} passed, 0 failed")


if __name__ == "__main__":
    main()
