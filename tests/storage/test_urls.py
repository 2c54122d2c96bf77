"""Database URLs: the two forms accepted, everything else refused with a typed error that
never quotes the URL (nor a password in it)."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from upvest_async import ConfigurationError
from upvest_async.storage import DatabaseURL, DatabaseURLError, parse_database_url


def test_sqlite_urls() -> None:
    url = parse_database_url("sqlite:///mirror.db")
    assert url == DatabaseURL("sqlite", path="mirror.db") and str(url) == "sqlite:///mirror.db"
    absolute = parse_database_url("sqlite:////var/lib/upvest/my mirror.db")
    assert absolute.path == "/var/lib/upvest/my mirror.db"
    assert str(absolute.sqlalchemy_url()) == "sqlite+aiosqlite:////var/lib/upvest/my mirror.db"


def test_postgresql_urls() -> None:
    url = parse_database_url("postgresql://mirror@db.internal:5432/upvest")
    assert (url.dialect, url.user, url.host, url.port, url.database) == (
        "postgresql", "mirror", "db.internal", 5432, "upvest")
    assert str(url) == "postgresql://mirror@db.internal:5432/upvest"
    assert url.sqlalchemy_url().render_as_string(hide_password=False) == \
        "postgresql+asyncpg://mirror@db.internal:5432/upvest"
    v6 = parse_database_url("postgresql://a%40b@[::1]:6543/my%2Fdb")
    assert (v6.user, v6.host, v6.database) == ("a@b", "::1", "my/db")
    assert str(v6) == "postgresql://a%40b@[::1]:6543/my%2Fdb"
    assert parse_database_url(str(v6)) == v6
    assert parse_database_url("postgresql://u@127.0.0.1:1/d").host == "127.0.0.1"


@pytest.mark.parametrize("text", [
    "", "sqlite:", "sqlite://", "sqlite:///", "sqlite:///:memory:", "sqlite://host/x.db",
    "sqlite:///x.db?mode=ro", "sqlite:///file:x.db", "sqlite:///dir/", "SQLITE:///x.db",
    "postgres://u@h:5432/d", "postgresql+asyncpg://u@h:5432/d", "mysql://u@h:3306/d",
    "postgresql://h:5432/d", "postgresql://@h:5432/d", "postgresql://u@h/d",
    "postgresql://u@h:/d", "postgresql://u@h:0/d", "postgresql://u@h:65536/d",
    "postgresql://u@h:5432", "postgresql://u@h:5432/", "postgresql://u@h:5432/d/e",
    "postgresql://u@h:5432/d?sslmode=require", "postgresql://u@h:5432/d#x",
    "postgresql://u@[zz]:5432/d", "postgresql://u@[::1]/d", "postgresql://u@h_x:5432/d",
    "postgresql://u@h:+5432/d", "postgresql://u@h:\uff15\uff14\uff13\uff12/d",
    "postgresql://u v@h:5432/d",
    "postgresql://u@h:5432/d\n", "postgresql://u%ff@h:5432/d", "postgresql://u%0a@h:1/d",
    "postgresql:///d", "x" * 5000,
])
def test_everything_else_is_refused(text: str) -> None:
    with pytest.raises(DatabaseURLError) as caught:
        parse_database_url(text)
    assert isinstance(caught.value, ConfigurationError)
    assert "sqlite" in str(caught.value).lower() or "database" in str(caught.value).lower()


def test_a_password_is_refused_and_never_shown() -> None:
    with pytest.raises(DatabaseURLError) as caught:
        parse_database_url("postgresql://mirror:s3cr3t-Pa55@db:5432/upvest")
    message = str(caught.value)
    assert "s3cr3t" not in message and "PGPASSWORD" in message and ".pgpass" in message
    assert "mirror" not in message and "db:5432" not in message  # the URL is not quoted


def test_not_text_is_refused() -> None:
    with pytest.raises(DatabaseURLError):
        parse_database_url(b"sqlite:///x.db")  # type: ignore[arg-type]


_secret = st.text(alphabet=string.ascii_letters + string.digits, min_size=10, max_size=20)


@given(st.text(max_size=200))
def test_garbage_gives_a_url_or_a_typed_error(text: str) -> None:
    try:
        url = parse_database_url(text)
    except DatabaseURLError:
        return
    assert parse_database_url(str(url)) == url


@given(secret=_secret, user=st.text(max_size=12), rest=st.text(max_size=40),
       scheme=st.sampled_from(["postgresql", "postgres", "sqlite", "mysql", ""]))
def test_a_password_never_leaks(secret: str, user: str, rest: str, scheme: str) -> None:
    text = f"{scheme}://{user}:{secret}@{rest}"
    try:
        parse_database_url(text)
    except DatabaseURLError as exc:
        assert secret not in str(exc) and secret not in repr(exc)
    else:
        assert scheme == "sqlite"  # sqlite:///... never reaches here with "//user:" text
