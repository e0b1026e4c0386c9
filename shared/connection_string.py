"""Storage connection strings and endpoints checked the way the Azure Storage SDKs read them.

A connection string is ``Name=value`` parts separated by ``;``, each name once (names are
case-insensitive). ``UseDevelopmentStorage=true`` must be the whole string (the Tables SDK
ignores it otherwise). Any other string needs a credential (``AccountName`` with
``AccountKey``, or ``SharedAccessSignature``) and, for each service used, its endpoint
(``BlobEndpoint``…) or an ``AccountName`` to build it from (``DefaultEndpointsProtocol``,
``EndpointSuffix``). A connection string is a secret: problems name parts, never values.
"""

from __future__ import annotations

import base64
import binascii
import re
from urllib.parse import urlsplit

_NAMES = ("DefaultEndpointsProtocol", "AccountName", "AccountKey", "SharedAccessSignature",
          "EndpointSuffix", "BlobEndpoint", "QueueEndpoint", "TableEndpoint", "FileEndpoint",
          "BlobSecondaryEndpoint", "QueueSecondaryEndpoint", "TableSecondaryEndpoint",
          "FileSecondaryEndpoint", "UseDevelopmentStorage")
_BY_KEY = {name.lower(): name for name in _NAMES}
_ACCOUNT = re.compile(r"^[a-z0-9]{3,24}$")
_DNS_SUFFIX = re.compile(r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
_PART_NAME = re.compile(r"^[A-Za-z]{1,40}$")
SERVICES = {"blob": "BlobEndpoint", "table": "TableEndpoint", "queue": "QueueEndpoint"}


def connection_string_problems(text: str, *, services: tuple[str, ...]) -> list[str]:
    """What stops the SDKs reaching ``services`` with this connection string; empty when nothing."""
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text):
        return ["is a URL, not a connection string: for an identity-based connection set "
                "MAIL_STORAGE__blobServiceUri and MAIL_STORAGE__tableServiceUri instead (and leave "
                "MAIL_STORAGE unset); otherwise copy the connection string from the storage "
                "account's Access keys"]
    parts, problems = _parts(text)
    if problems:
        return problems
    if "usedevelopmentstorage" in parts:
        if parts["usedevelopmentstorage"] != "true" or len(parts) > 1:
            return ["has UseDevelopmentStorage, which must be the whole connection string and "
                    "exactly 'UseDevelopmentStorage=true' (Azurite on its default ports); for "
                    "other ports give AccountName, AccountKey and the endpoints"]
        return []
    problems += _credential_problems(parts)
    for part in ("defaultendpointsprotocol", "endpointsuffix"):
        problems += _derivation_problems(part, parts.get(part))
    for service in services:
        name = SERVICES[service]
        endpoint = parts.get(name.lower())
        if endpoint is not None:
            problem = endpoint_problem(endpoint)
            if problem:
                problems.append(f"has a {name} that {problem}")
        elif name.replace("Endpoint", "SecondaryEndpoint").lower() in parts:
            problems.append(f"has a secondary {service} endpoint but no {name}")
        elif "accountname" not in parts:
            problems.append(f"has neither {name} nor AccountName, so the {service} service "
                            "cannot be reached")
    return problems


def endpoint_problem(url: str) -> str | None:
    """What is wrong with a storage service endpoint URL, or None. Never repeats the URL."""
    try:
        parsed = urlsplit(url)
        hostname = parsed.hostname
        port = parsed.port
    except ValueError:
        return "is not a URL"
    if parsed.scheme.lower() not in ("https", "http") or not hostname:
        return "is not an https:// (or, locally, http://) URL with a host name"
    if any(c.isspace() or not c.isprintable() for c in url):
        return "contains spaces or control characters"
    if parsed.query or parsed.fragment or parsed.username is not None:
        return ("carries a query string, fragment or user name (a SAS token or a password does "
                "not belong in an endpoint)")
    if port == 0:
        return "has port 0"
    return None


def _parts(text: str) -> tuple[dict[str, str], list[str]]:
    pieces = text.rstrip(";").split(";")
    parts: dict[str, str] = {}
    problems: list[str] = []
    for number, piece in enumerate(pieces, 1):
        key, equals, value = piece.partition("=")
        where = f"part {number} of {len(pieces)}"
        if not equals or not key or not value:
            problems.append(f"is not Name=value parts separated by ';' ({where} is not Name=value)")
            continue
        known = _BY_KEY.get(key.lower())
        if known is None:
            shown = f"'{key}'" if _PART_NAME.match(key) else f"{where}, whose name"
            hint = (", without spaces around '='" if _BY_KEY.get(key.strip().lower()) else "")
            problems.append(f"has {shown}, which is not a connection string name; the names are "
                            f"{', '.join(_NAMES)}{hint}")
            continue
        if key.lower() in parts:
            problems.append(f"names {known} twice")
        parts[key.lower()] = value
    return parts, problems


def _credential_problems(parts: dict[str, str]) -> list[str]:
    problems = []
    has_key = "accountkey" in parts
    if has_key and "accountname" not in parts:
        problems.append("has AccountKey but no AccountName")
    if not has_key and "sharedaccesssignature" not in parts:
        problems.append("has no credential: add AccountName and AccountKey (or SharedAccessSignature); "
                        "on Azure prefer the identity-based MAIL_STORAGE__* settings")
    if has_key:
        try:
            base64.b64decode(parts["accountkey"], validate=True)
        except binascii.Error:
            problems.append("has an AccountKey that is not valid base64: copy key1 or key2 from the "
                            "storage account's Access keys")
    if "sharedaccesssignature" in parts and "sig=" not in parts["sharedaccesssignature"]:
        problems.append("has a SharedAccessSignature without a signature (no 'sig=')")
    if "accountname" in parts and not _ACCOUNT.match(parts["accountname"]):
        problems.append("has an AccountName that is not a storage account name (3 to 24 lowercase "
                        "letters and digits)")
    return problems


def _derivation_problems(part: str, value: str | None) -> list[str]:
    if value is None:
        return []
    if part == "defaultendpointsprotocol" and value.lower() not in ("https", "http"):
        return ["has a DefaultEndpointsProtocol other than https or http"]
    if part == "endpointsuffix" and not _DNS_SUFFIX.match(value):
        return ["has an EndpointSuffix that is not a DNS suffix such as core.windows.net"]
    return []
