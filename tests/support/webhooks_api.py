"""A stub of the Upvest API's auth endpoints on 127.0.0.1 for webhook tests: ``POST
/auth/token`` (any client) and ``GET /auth/verify_keys`` (a JWKS that tests can swap)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from support.keys import pem


class StubAPI:
    def __init__(self, jwks: dict[str, Any]) -> None:
        self.jwks: dict[str, Any] | None = jwks
        self.status = 200
        self.key_fetches = 0
        self.scopes: list[str] = []
        self.base_url = ""
        self._runner: web.AppRunner | None = None
        app = web.Application()
        app.router.add_post("/auth/token", self._token)
        app.router.add_get("/auth/verify_keys", self._keys)
        self.app = app

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.scopes.append(str(form.get("scope", "")))
        return web.json_response({"access_token": "t0ken", "token_type": "bearer",
                                  "expires_in": 3600, "scope": form.get("scope", "")})

    async def _keys(self, request: web.Request) -> web.Response:
        self.key_fetches += 1
        assert request.headers["authorization"] == "Bearer t0ken"
        if self.status != 200:
            return web.json_response({"status": self.status}, status=self.status)
        return web.json_response(self.jwks)

    async def __aenter__(self) -> StubAPI:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def client_settings(self) -> dict[str, Any]:
        from support.keys import p521_key

        return {
            "client_id": "c5161455-4d27-4781-bc74-f05532e49a77", "client_secret": "s3cret",
            "key_id": "client-key", "private_key": pem(p521_key()), "base_url": self.base_url,
        }

    def env(self) -> dict[str, str]:
        settings = self.client_settings()
        return {
            "UPVEST_API_BASE_URL": settings["base_url"],
            "UPVEST_API_CLIENT_ID": settings["client_id"],
            "UPVEST_API_CLIENT_SECRET": settings["client_secret"],
            "UPVEST_API_KEY_ID": settings["key_id"],
            "UPVEST_API_HTTP_SIGN_PRIVATE_KEY": settings["private_key"].decode(),
        }
