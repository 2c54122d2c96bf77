"""The compiled part of the package: ``upvest_async.pagination._build`` (``_build.c``), typed
positions from a decoded page in one C pass. Everything else is in ``pyproject.toml``.

The extension is optional: where it cannot be compiled (no compiler), the package installs
without it and uses the pure-Python builder it mirrors, with the same results. It uses the
limited API of Python 3.11, so the wheel is ``abi3``: one wheel for every supported Python.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "upvest_async.pagination._build",
            ["upvest_async/pagination/_build.c"],
            py_limited_api=True,
            optional=True,
        )
    ],
    options={"bdist_wheel": {"py_limited_api": "cp311"}},
)
