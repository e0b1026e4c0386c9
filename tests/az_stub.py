"""Stands in for the Azure CLI when the tenant-setup tests run infra/tenant/setup-entra.sh.

``az rest`` is carried out for real against its URL, which must be the local fake Graph
(``AZ_STUB_GRAPH``), with az's ``--query`` (JMESPath, as az uses) and ``-o tsv|json|none``.
Every other command answers from the test's scenario file (``AZ_STUB_SCENARIO``): the first
answer whose command words match and whose ``query`` is part of the ``--query`` given. A
command without an answer fails with exit code 2, so a new call is never passed silently.
Each invocation is appended to ``AZ_STUB_LOG`` as a JSON line.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import jmespath

_VALUE_OPTIONS = {"--method": "method", "-m": "method", "--url": "url", "-u": "url", "--body": "body",
                  "-b": "body", "--query": "query", "--output": "output", "-o": "output"}


def _options(arguments: list[str]) -> tuple[list[str], dict[str, str], list[str]]:
    """Command words, options with a value, and --headers values."""
    words: list[str] = []
    options: dict[str, str] = {}
    headers: list[str] = []
    i = 0
    while i < len(arguments):
        arg = arguments[i]
        if arg == "--headers":
            while i + 1 < len(arguments) and not arguments[i + 1].startswith("-"):
                headers.append(arguments[i + 1])
                i += 1
        elif arg.startswith("-") and i + 1 < len(arguments) and not arguments[i + 1].startswith("--"):
            options[_VALUE_OPTIONS.get(arg, arg)] = arguments[i + 1]
            i += 1
        elif not arg.startswith("-") and not options:
            words.append(arg)
        i += 1
    return words, options, headers


def _tsv(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "\n".join(_tsv(v) if not isinstance(v, list) else "\t".join(map(_tsv, v)) for v in value)
    if isinstance(value, dict):
        return "\t".join(_tsv(v) for v in value.values())
    return str(value)


def _print(value: Any, options: dict[str, str]) -> None:
    if "query" in options:
        value = jmespath.search(options["query"], value)
    output = options.get("output", "json")
    if output == "none":
        return
    text = _tsv(value) if output == "tsv" else json.dumps(value, indent=2)
    if text:
        print(text)


def _rest(options: dict[str, str], headers: list[str]) -> int:
    url = options["url"]
    graph = os.environ["AZ_STUB_GRAPH"]
    if not url.startswith(graph):
        print(f"az stub: refusing {url}: only {graph} is reachable in tests", file=sys.stderr)
        return 2
    fields = dict(h.split("=", 1) for h in headers)
    data = options["body"].encode() if "body" in options else None
    request = urllib.request.Request(  # noqa: S310 - the fake Graph's http URL, checked above
        urllib.parse.quote(url, safe=":/?&=$'(),%"), data=data, method=options.get("method", "get").upper(),
        headers=fields,
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - the fake Graph's http URL
            body = response.read()
    except urllib.error.HTTPError as e:
        print(f"{e.reason}({e.read().decode()})", file=sys.stderr)
        return 1
    _print(json.loads(body) if body else None, options)
    return 0


def main(arguments: list[str]) -> int:
    """Runs one az command line; the exit code az would give."""
    with open(os.environ["AZ_STUB_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps(arguments) + "\n")
    words, options, headers = _options(arguments)
    if words == ["rest"]:
        return _rest(options, headers)
    with open(os.environ["AZ_STUB_SCENARIO"], encoding="utf-8") as scenario:
        answers = json.load(scenario)
    for answer in answers:
        if answer["command"].split() == words and answer.get("query", "") in options.get("query", ""):
            if answer.get("output"):
                print(answer["output"])
            return int(answer.get("exit", 0))
    print(f"az stub: no answer for: az {' '.join(arguments)}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
