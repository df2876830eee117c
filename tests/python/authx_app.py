#!/usr/bin/env python3
"""Tiny FastAPI + AuthX app that verifies tokens (e.g. ones jwtgate minted).

    python authx_app.py --port P --secret S

Binds 127.0.0.1:P, served by uvicorn. AuthX is configured the stock way an app sharing
jwtgate's HS256 secret would be: token locations headers + cookies, CSRF protection on,
default names (cookies access_token_cookie / refresh_token_cookie, CSRF cookies
csrf_access_token / csrf_refresh_token, CSRF header X-CSRF-TOKEN, Authorization: Bearer),
and AuthX's own error handlers (auth.handle_errors), so the status codes are AuthX's:
401 for missing token / missing or wrong CSRF / wrong type / not fresh, but 422 for
anything that fails decoding (bad signature, expired, claims failing pydantic validation
such as a numeric "fresh" or a non-string "sub").

  GET  /health     200 {"ok": true}
  GET  /protected  access token           -> {"sub", "fresh", "type", "claims"}
  POST /protected  access token (+ X-CSRF-TOKEN when the token came from a cookie)
  GET  /fresh      fresh access token     -> same body
  POST /refresh    refresh token (+ CSRF in cookie mode) -> {"sub", "type", "claims",
                   "access_token"} (a new NON-fresh access token, as in the seed docs)
  POST /login      the seeds' login: JSON {"username","password"}, test/test ->
                   {"access_token" (fresh), "refresh_token"}; else 401
  GET  /sensitive_operation  fresh access token -> "You have access to this sensitive operation"

"claims" is AuthX's parsed TokenPayload (extra claims verbatim; pydantic renders exp as an
ISO-8601 datetime string), not the raw JWT payload.
"""

import argparse
import os
import sys
import warnings

for _k in [k for k in os.environ if k.upper().startswith("JWT_")]:
    del os.environ[_k]  # AuthXConfig is a BaseSettings: keep env out of the config

import uvicorn  # noqa: E402
from authx import AuthX, AuthXConfig, TokenPayload  # noqa: E402
from fastapi import Depends, FastAPI, HTTPException  # noqa: E402
from pydantic import BaseModel  # noqa: E402
from jwt.warnings import InsecureKeyLengthWarning  # noqa: E402

warnings.simplefilter("ignore", InsecureKeyLengthWarning)


def create_app(secret: str) -> FastAPI:
    auth = AuthX(
        config=AuthXConfig(
            JWT_ALGORITHM="HS256",
            JWT_DECODE_ALGORITHMS=["HS256"],
            JWT_SECRET_KEY=secret,
            JWT_TOKEN_LOCATION=["headers", "cookies"],
            JWT_COOKIE_CSRF_PROTECT=True,
            JWT_COOKIE_SECURE=False,
        )
    )
    app = FastAPI()
    auth.handle_errors(app)

    def body(p: TokenPayload, with_fresh: bool = True) -> dict:
        out = {"sub": p.sub, "type": p.type}
        if with_fresh:
            out["fresh"] = p.fresh
        out["claims"] = p.model_dump(mode="json", exclude_none=True)
        return out

    @app.get("/health")
    def health():
        return {"ok": True}

    @app.get("/protected")
    def get_protected(p: TokenPayload = Depends(auth.access_token_required)):
        return body(p)

    @app.post("/protected")
    def post_protected(p: TokenPayload = Depends(auth.access_token_required)):
        return body(p)

    @app.get("/fresh")
    def get_fresh(p: TokenPayload = Depends(auth.fresh_token_required)):
        return body(p)

    @app.post("/refresh")
    def post_refresh(p: TokenPayload = Depends(auth.refresh_token_required)):
        out = body(p, with_fresh=False)
        out["access_token"] = auth.create_access_token(uid=p.sub, fresh=False)
        return out

    class LoginForm(BaseModel):
        username: str
        password: str

    @app.post("/login")
    def login(data: LoginForm):
        if data.username == "test" and data.password == "test":
            return {
                "access_token": auth.create_access_token(uid=data.username, fresh=True),
                "refresh_token": auth.create_refresh_token(uid=data.username),
            }
        raise HTTPException(401, "Bad username/password")

    @app.get("/sensitive_operation", dependencies=[Depends(auth.fresh_token_required)])
    def sensitive_operation():
        return "You have access to this sensitive operation"

    return app


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--secret", required=True)
    args = ap.parse_args(argv)
    uvicorn.run(create_app(args.secret), host="127.0.0.1", port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
