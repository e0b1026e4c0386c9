"""Indexes a deployment package's function_app.py with the Functions Python worker's own loader.

Run by tests/test_package.py under Python 3.13+ in a venv holding requirements.txt and
azure-functions-runtime only, with the package directory as its argument and working
directory, as the host starts the worker. Prints one JSON document: each function's name and
raw bindings, and whether ``rich`` was imported or is installed.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from typing import Any

from azure_functions_runtime.bindings.meta import load_binding_registry
from azure_functions_runtime.functions import Registry
from azure_functions_runtime.loader import index_function_app, process_indexed_function


class _Message:
    """Stands in for the host's gRPC message classes, which only carry fields here."""

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)


class _BindingInfo(_Message):
    """BindingInfo with the protobuf enum values the worker compares against."""

    undefined, string, binary, stream = 0, 1, 2, 3
    out, inout = 1, 2


setattr(_BindingInfo, "in", 0)  # a Python keyword, as in the generated protobuf class


def main(package: str) -> None:
    """Prints what the worker would report to the host for the package."""
    sys.path.insert(0, package)
    protos = types.SimpleNamespace(
        BindingInfo=_BindingInfo, RpcFunctionMetadata=_Message, RpcRetryOptions=_Message
    )
    load_binding_registry()
    indexed = index_function_app(f"{package}/function_app.py")
    metadata, _ = process_indexed_function(protos, Registry(), indexed, package)
    print(json.dumps({
        "functions": {m.name: [json.loads(b) for b in m.raw_bindings] for m in metadata},
        "rich_imported": "rich" in sys.modules,
        "rich_installed": importlib.util.find_spec("rich") is not None,
        "python": list(sys.version_info[:2]),
    }))


if __name__ == "__main__":
    main(sys.argv[1])
