"""nox sessions mirroring the Makefile: `nox -s lint tests`."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "tests"]


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    session.install("-e", ".[dev,native]")
    session.run("ruff", "check", "src", "tests", "bench", "noxfile.py")
    session.run("ruff", "format", "--check", "src", "tests", "bench", "noxfile.py")
    session.run("mypy")


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    session.install("-e", ".[dev,native]")
    session.run("pytest", "-q", *session.posargs)
