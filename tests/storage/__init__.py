"""Tests of upvest_async.storage (SQLite and PostgreSQL)."""
