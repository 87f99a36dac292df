"""One definition of "a credential written into a file", shared by the compose, deploy
and secret-scanning tests."""

from __future__ import annotations

import re

SECRET_NAME = re.compile(r"PASSWORD|SECRET|ACCESS_KEY|ROOT_USER|TOKEN|API_KEY", re.I)
ENV_REFERENCE = re.compile(r"^\$\{([A-Z][A-Z0-9_]+)(:\?[^}]*)?\}$")
# user:password@host in a URL, unless the password part is a variable ($VAR, ${VAR}, $$VAR)
URL_CREDENTIAL = re.compile(r"://[^/\s:$@]+:[^@\s$]+@")


def credential_literals(text: str, allowed: re.Pattern[str] = ENV_REFERENCE) -> list[str]:
    """Lines that give a secret-named key a value other than an ``allowed`` reference,
    and URLs with an inline password."""
    found = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            continue
        key, sep, value = stripped.partition(":")
        if not sep:
            key, sep, value = stripped.partition("=")
        value = value.strip().strip(",")
        if (
            SECRET_NAME.search(key) and value and not allowed.match(value)
        ) or URL_CREDENTIAL.search(line):
            found.append(line)
    return found
