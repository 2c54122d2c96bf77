"""Hand-written floor for ``export-positions``: aiohttp + orjson, no SDK (benchmarks/README.md).

    UPVEST_API_* set (as for the CLI)  python benchmarks/floor_export.py ACCOUNTS_FILE OUT

Gets one access token, requests the first page (limit 1000) of every account, then the
remaining pages, at most 16 requests in flight, and writes one JSON line per position in
account order. Every request is signed like the SDK's: the project's pure signing function
(``upvest_async/signing.py``, loaded as a lone file, so the package itself is not imported).
"""

import asyncio
import importlib.util
import os
import sys
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import orjson
from cryptography.hazmat.primitives.serialization import load_pem_private_key

_spec = importlib.util.spec_from_file_location(
    "signing", Path(__file__).resolve().parent.parent / "upvest_async" / "signing.py")
assert _spec is not None and _spec.loader is not None
signing = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(signing)
ENV = os.environ
KEY = load_pem_private_key(ENV["UPVEST_API_HTTP_SIGN_PRIVATE_KEY"].encode(),
                           ENV["UPVEST_API_HTTP_SIGN_PRIVATE_KEY_PASSPHRASE"].encode())
BASE, PAGE, LIMIT = ENV["UPVEST_API_BASE_URL"].rstrip("/"), 1000, 16


def signed(method: str, path: str, query: str, headers: dict[str, str], body: bytes) -> dict:
    return {**headers, **signing.sign_request(
        method=method, path=path, query=query, headers=headers, body=body,
        private_key=KEY, key_id=ENV["UPVEST_API_KEY_ID"])}


async def main(accounts: list[str], out: Path) -> None:
    base = {"accept": "application/json", "upvest-api-version": "1",
            "upvest-client-id": ENV["UPVEST_API_CLIENT_ID"]}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session:
        form = urlencode({"client_id": ENV["UPVEST_API_CLIENT_ID"], "grant_type":
                          "client_credentials", "client_secret": ENV["UPVEST_API_CLIENT_SECRET"],
                          "scope": "positions:read"}).encode()
        head = {**base, "content-type": "application/x-www-form-urlencoded"}
        async with session.post(BASE + "/auth/token", data=form,
                                headers=signed("POST", "/auth/token", "", head, form)) as resp:
            resp.raise_for_status()
            token = orjson.loads(await resp.read())["access_token"]
        base["authorization"] = f"Bearer {token}"
        limiter = asyncio.Semaphore(LIMIT)

        async def get(account: str, offset: int) -> dict:
            path, query = f"/accounts/{account}/positions", f"offset={offset}&limit={PAGE}"
            async with limiter, session.get(
                    f"{BASE}{path}?{query}", headers=signed("GET", path, query, base, b"")) as r:
                r.raise_for_status()
                return orjson.loads(await r.read())

        firsts = [asyncio.ensure_future(get(account, 0)) for account in accounts]
        rests = []
        for account, first in zip(accounts, firsts, strict=True):
            total = (await first)["meta"]["total_count"]
            rests.append([asyncio.ensure_future(get(account, o)) for o in range(PAGE, total, PAGE)])
        with out.open("wb") as stream:
            for first, rest in zip(firsts, rests, strict=True):
                for page in [first.result(), *[await task for task in rest]]:
                    stream.write(b"".join(orjson.dumps(p) + b"\n" for p in page["data"]))


if __name__ == "__main__":
    ids = [line.strip() for line in Path(sys.argv[1]).read_text().splitlines() if line.strip()]
    asyncio.run(main(ids, Path(sys.argv[2])))
