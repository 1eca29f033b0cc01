"""Secrets out of everything the platform prints, ships or logs.

Three kinds of secret are known here:

- credentials in a URI: ``scheme://user:password@host/...`` (the user name is kept, the password
  becomes ``***``; a lone ``token@`` in the user part is treated as a password);
- values of environment variables whose names look secret (:func:`is_secret_name`:
  ``*TOKEN*``, ``*SECRET*``, ``*PASSWORD*``, ``*PASSWD*``, ``*KEY*``, ``*CREDENTIAL*``);
- the Ray auth token (and any other value the caller names).

:func:`redact` applies all of them to free text (messages, logs); :func:`redact_uri` and
:func:`redact_env` to one URI and to an environment mapping. :func:`split_credentials` takes
the credentials out of an MLflow tracking URI so that they travel as
``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` environment variables (which the MLflow
client reads) and never as part of the URI.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|KEY|CREDENTIAL", re.IGNORECASE)
# scheme://userinfo@ where userinfo has no '/', '@' or whitespace.
_URI_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")
USERNAME_ENV = "MLFLOW_TRACKING_USERNAME"
PASSWORD_ENV = "MLFLOW_TRACKING_PASSWORD"  # noqa: S105 (a name, not a password)


def is_secret_name(name: str) -> bool:
    """True for environment variable names that look like they hold a secret."""
    return bool(_SECRET_NAME.search(name))


def _mask_userinfo(match: re.Match[str]) -> str:
    user, sep, _ = match["userinfo"].partition(":")
    return f"{match['scheme']}{user}:{MASK}@" if sep else f"{match['scheme']}{MASK}@"


def redact_uri(uri: str) -> str:
    """``uri`` with the password (or a lone token) of its user part replaced by ``***``."""
    return _URI_USERINFO.sub(_mask_userinfo, uri)


def redact_env(env: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``env`` with secret-looking values masked and URI credentials redacted."""
    return {k: MASK if is_secret_name(k) and v else redact_uri(v) for k, v in env.items()}


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with URI credentials and every non-empty value of ``secrets`` masked."""
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return redact_uri(text)


def split_credentials(uri: str) -> tuple[str, dict[str, str]]:
    """``(uri without user:password@, env vars that carry them for the MLflow client)``.
    A URI without credentials comes back unchanged with no env vars."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri, {}
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    env = {USERNAME_ENV: _unquote(parts.username or "")}
    if parts.password is not None:
        env[PASSWORD_ENV] = _unquote(parts.password)
    return clean, env


def _unquote(text: str) -> str:
    from urllib.parse import unquote

    return unquote(text)
