#!/usr/bin/env python3
"""Tiny Flask + flask-jwt-extended app that verifies tokens (e.g. ones jwtgate minted).

    python flask_app.py --port P --secret S [--server werkzeug|gunicorn] [--reverse-proxied]

Binds 127.0.0.1:P, served by werkzeug's threaded server (Flask's own dependency), or by
gunicorn (one worker, four threads) with its default settings: Flask's usual production
server, which among other things takes SCRIPT_NAME / PATH_INFO headers from 127.0.0.1.
--reverse-proxied wraps the app in the "ReverseProxied" middleware of Flask's snippets, as
apps mounted below a prefix use it: X-Script-Name becomes SCRIPT_NAME and is cut from the
path routed on, X-Scheme becomes the URL scheme, whoever sent them.
flask-jwt-extended is configured the stock way an app sharing jwtgate's HS256 secret
would be: JWT_TOKEN_LOCATION headers + cookies, JWT_COOKIE_CSRF_PROTECT on, default names
(cookies access_token_cookie / refresh_token_cookie, CSRF cookies csrf_access_token /
csrf_refresh_token, CSRF header X-CSRF-TOKEN, Authorization: Bearer), the library's
default error callbacks, so status codes are flask-jwt-extended's: 401 for missing token,
missing/wrong CSRF, expired, not fresh; 422 for bad signature, undecodable token, wrong
token type, non-string sub.

  GET  /health     200 {"ok": true}
  GET  /protected  access token           -> {"sub", "fresh", "type", "claims"}
  POST /protected  access token (+ X-CSRF-TOKEN when the token came from a cookie)
  GET  /fresh      fresh access token (fresh == true, or a numeric fresh >= now)
  POST /refresh    refresh token (+ CSRF in cookie mode) -> {"sub", "type", "claims"}

"claims" is get_jwt(): the raw payload plus flask's defaults for missing type/fresh/jti.
"""

import argparse
import logging
import sys
import warnings

from flask import Flask, jsonify
from flask_jwt_extended import JWTManager, get_jwt, jwt_required
from jwt.warnings import InsecureKeyLengthWarning

warnings.simplefilter("ignore", InsecureKeyLengthWarning)


def create_app(secret: str) -> Flask:
    app = Flask("jwtgate-flask-app")
    app.config.update(
        JWT_ALGORITHM="HS256",
        JWT_SECRET_KEY=secret,
        JWT_TOKEN_LOCATION=["headers", "cookies"],
        JWT_COOKIE_CSRF_PROTECT=True,
        JWT_COOKIE_SECURE=False,
    )
    JWTManager(app)

    def body(with_fresh: bool = True):
        c = get_jwt()
        out = {"sub": c["sub"], "type": c["type"]}
        if with_fresh:
            out["fresh"] = c["fresh"]
        out["claims"] = c
        return jsonify(out)

    @app.get("/health")
    def health():
        return jsonify(ok=True)

    @app.route("/protected", methods=["GET", "POST"])
    @jwt_required()
    def protected():
        return body()

    @app.get("/fresh")
    @jwt_required(fresh=True)
    def fresh():
        return body()

    @app.post("/refresh")
    @jwt_required(refresh=True)
    def refresh():
        return body(with_fresh=False)

    return app


class ReverseProxied:
    """Mount point and scheme from the front proxy's headers (Flask snippet style)."""

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        script_name = environ.get("HTTP_X_SCRIPT_NAME", "")
        if script_name:
            environ["SCRIPT_NAME"] = script_name
            path = environ.get("PATH_INFO", "")
            if path.startswith(script_name):
                environ["PATH_INFO"] = path[len(script_name):]
        scheme = environ.get("HTTP_X_SCHEME", "")
        if scheme:
            environ["wsgi.url_scheme"] = scheme
        return self.wsgi_app(environ, start_response)


def serve_gunicorn(app: Flask, port: int) -> None:
    from gunicorn.app.base import BaseApplication

    class Server(BaseApplication):
        def load_config(self):
            for key, value in {"bind": f"127.0.0.1:{port}", "workers": 1, "threads": 4,
                               "loglevel": "warning"}.items():
                self.cfg.set(key, value)

        def load(self):
            return app

    Server().run()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--server", choices=["werkzeug", "gunicorn"], default="werkzeug")
    ap.add_argument("--reverse-proxied", action="store_true")
    args = ap.parse_args(argv)
    app = create_app(args.secret)
    if args.reverse_proxied:
        app.wsgi_app = ReverseProxied(app.wsgi_app)
    if args.server == "gunicorn":
        serve_gunicorn(app, args.port)
        return 0
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app.run(host="127.0.0.1", port=args.port, threaded=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
