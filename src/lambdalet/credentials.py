"""The access keys lambdalet knows, in memory: the operator's (from the `--auth` file) and each execution
environment's temporary credentials, issued when the environment starts and revoked when it ends.

The api verifies signatures against this store; the scheduler hands it to every environment it creates,
which issues its own credentials from it (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN).
"""

from __future__ import annotations

import configparser
import re
import secrets
import string
from collections import OrderedDict
from dataclasses import dataclass

_KEY_ID = re.compile(r"\w+", re.ASCII)  # AWS's AccessKeyId pattern
_UPPER_DIGITS = string.ascii_uppercase + string.digits
_REVOKED_KEPT = 10_000  # revoked key ids remembered (answered "expired" rather than "invalid")


class CredentialsFileError(ValueError):
    """The --auth file cannot be used: the message says where and why."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """One access key: whose it is, and for temporary credentials their session token."""

    access_key_id: str
    secret_access_key: str
    session_token: str | None  # temporary credentials only
    owner: str  # the operator's profile name, or the function version (name:version) of an environment
    environment: str | None = None  # the environment the temporary credentials belong to

    def variables(self) -> dict[str, str]:
        """The variables Lambda sets in a runtime's environment for these credentials."""
        return {"AWS_ACCESS_KEY_ID": self.access_key_id, "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
                "AWS_SESSION_TOKEN": self.session_token or ""}


class CredentialStore:
    """Access key id -> Credentials. Temporary credentials live from issue() to revoke()."""

    def __init__(self, operator: dict[str, Credentials] | None = None) -> None:
        self._keys: dict[str, Credentials] = dict(operator or {})
        self._revoked: OrderedDict[str, None] = OrderedDict()

    def lookup(self, access_key_id: str) -> Credentials | None:
        return self._keys.get(access_key_id)

    def revoked(self, access_key_id: str) -> bool:
        """Whether access_key_id belonged to an environment that has ended (recently enough to remember)."""
        return access_key_id in self._revoked

    def issue(self, owner: str, environment: str) -> Credentials:
        """New temporary credentials for one execution environment, shaped like STS's (ASIA...)."""
        while True:
            key_id = "ASIA" + "".join(secrets.choice(_UPPER_DIGITS) for _ in range(16))
            if key_id not in self._keys and key_id not in self._revoked:
                break
        creds = Credentials(key_id, secrets.token_urlsafe(30), secrets.token_urlsafe(96), owner, environment)
        self._keys[key_id] = creds
        return creds

    def revoke(self, credentials: Credentials) -> None:
        """End temporary credentials: calls signed with them are refused from now on."""
        if credentials.session_token is None or self._keys.pop(credentials.access_key_id, None) is None:
            return
        self._revoked[credentials.access_key_id] = None
        if len(self._revoked) > _REVOKED_KEPT:
            self._revoked.popitem(last=False)


def load_credentials_file(path: str) -> dict[str, Credentials]:
    """The operator's keys from an AWS shared-credentials file: one [profile] section per key, with
    aws_access_key_id and aws_secret_access_key. Raises CredentialsFileError naming what is wrong."""
    parser = configparser.ConfigParser(interpolation=None, default_section="\x00none")
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except OSError as exc:
        raise CredentialsFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise CredentialsFileError(f"{path} is not an AWS credentials file (INI sections): "
                                   f"{str(exc).splitlines()[0]}") from None
    keys: dict[str, Credentials] = {}
    for profile in parser.sections():
        section = parser[profile]
        key_id = section.get("aws_access_key_id", "").strip()
        secret = section.get("aws_secret_access_key", "").strip()
        if not key_id or not secret:
            missing = "aws_access_key_id" if not key_id else "aws_secret_access_key"
            raise CredentialsFileError(f"{path}: profile [{profile}] has no {missing}")
        if _KEY_ID.fullmatch(key_id) is None:
            raise CredentialsFileError(f"{path}: profile [{profile}]: aws_access_key_id must be letters, "
                                       f"digits and underscores, got {key_id!r}")
        if "aws_session_token" in section:
            raise CredentialsFileError(f"{path}: profile [{profile}] has an aws_session_token: lambdalet "
                                       "takes long-term keys only")
        if key_id in keys:
            raise CredentialsFileError(f"{path}: access key {key_id} is in [{keys[key_id].owner}] and [{profile}]")
        keys[key_id] = Credentials(key_id, secret, None, profile)
    if not keys:
        raise CredentialsFileError(f"{path} holds no access keys (expected [profile] sections with "
                                   "aws_access_key_id and aws_secret_access_key)")
    return keys
