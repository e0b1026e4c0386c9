"""The layers of shared/, read from the imports: dependencies point one way, and no cycle.

    root       settings, wiring (the one composition root), entry, cli, doctor
      │ may import everything below
    adapters   Key Vault, Entra ID, IMAP, POP3, Blob, Table, Queue, leases
    core       the poll, the fan-out, resyncs, metrics, summaries
      │ both may import only the bottom
    bottom     model, ports, errors, naming, the advice table, the settings' declaration

Adapters never import each other, except the small support modules they share (error
translation, SASL). A new module must be given its layer here.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "shared"

# The settings' declaration (names, types, ranges, defaults; no reading) is at the bottom:
# PollOptions takes its defaults from it.
BOTTOM = {"shared", "shared.model", "shared.ports", "shared.errors", "shared.naming", "shared.dedup",
          "shared.mailbox_list", "shared.error_text", "shared.diagnoses", "shared.setting_specs",
          "shared.clouds", "shared.log_texts", "shared.history_scope",
          "shared.delivery_actions", "shared.folder_patterns", "shared.action_ports"}
CORE = {"shared.poll", "shared.folder_poll", "shared.pop3_poll", "shared.fanout", "shared.resync",
        "shared.metrics", "shared.summary", "shared.delivery", "shared.throttle", "shared.first_run",
        "shared.notices", "shared.notice_document", "shared.after_delivery",
        "shared.copy_recovery", "shared.mailbox_plan", "shared.pop3_deletes", "shared.batching",
        "shared.streamed", "shared.reconnect", "shared.time_box", "shared.mailbox_poll",
        "shared.folder_flow"}
ADAPTER_SUPPORT = {"shared.adapters", "shared.adapters.storage_errors", "shared.adapters.mail_failures",
                   "shared.adapters.imap_failures", "shared.adapters.pop3_failures",
                   "shared.adapters.sasl", "shared.adapters.table_rows", "shared.adapters.mail_server",
                   "shared.adapters.mail_socket", "shared.adapters.imap_client", "shared.adapters.imap_body",
                   "shared.adapters.queue_messages", "shared.adapters.dot_stuffing", "shared.adapters.tls",
                   "shared.adapters.http11", "shared.adapters.http_framing"}
ROOT_LAYER = {"shared.settings", "shared.setting_reader", "shared.ncrontab",
              "shared.connection_string", "shared.storage_settings", "shared.wiring", "shared.storage_clients",
              "shared.built_once", "shared.entry", "shared.cli", "shared.doctor",
              "shared.mailbox_commands", "shared.composition", "shared.report_json",
              "shared.action_status", "shared.doctor_actions"}
# Libraries that do I/O or belong to one service: the bottom and the core stay free of them.
IO_LIBRARIES = ("azure", "msal", "imapclient", "requests", "rich", "imaplib", "poplib", "socket",
                "ssl", "urllib.request", "http")


def layer_of(module: str) -> str:
    if module in BOTTOM:
        return "bottom"
    if module in CORE:
        return "core"
    if module.startswith("shared.adapters"):
        return "adapters"
    if module in ROOT_LAYER or module.startswith("shared.composition"):
        return "root"
    raise AssertionError(f"{module} has no layer: add it to tests/test_layers.py")


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(path: Path, *, typing_too: bool = True) -> Iterator[str]:
    """Every module ``path`` imports, at any depth of the file (lazy imports count too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped: set[int] = set()
    if not typing_too:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                skipped.update(id(n) for n in ast.walk(node))
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def project_imports(path: Path, known: dict[str, Path], *, typing_too: bool = True) -> set[str]:
    return {name for name in imports(path, typing_too=typing_too) if name in known}


ALLOWED = {
    "bottom": {"bottom"},
    "core": {"bottom", "core"},
    "adapters": {"bottom"},
    "root": {"bottom", "core", "adapters", "root"},
}


@pytest.mark.parametrize("module", sorted(modules()))
def test_each_module_imports_only_what_its_layer_may(module: str) -> None:
    known = modules()
    layer = layer_of(module)
    wrong = []
    for target in project_imports(known[module], known):
        if layer == "adapters" and target in ADAPTER_SUPPORT:
            continue
        if layer_of(target) not in ALLOWED[layer]:
            wrong.append(f"{target} ({layer_of(target)})")
    assert not wrong, f"{module} ({layer}) imports {', '.join(sorted(wrong))}"


@pytest.mark.parametrize("module", sorted(m for m in modules() if layer_of(m) in ("bottom", "core")))
def test_the_bottom_and_the_core_do_no_io(module: str) -> None:
    used = {name for name in imports(modules()[module])
            if any(name == lib or name.startswith(lib + ".") for lib in IO_LIBRARIES)}
    assert not used, f"{module} imports {sorted(used)}"


def test_no_import_cycles() -> None:
    known = modules()
    # A package importing its own submodules is not a cycle of the code's logic.
    graph = {m: {t for t in project_imports(p, known, typing_too=False) - {m}
                 if not m.startswith(t + ".")} for m, p in known.items()}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycle = [*path[path.index(target):], target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_no_module_is_longer_than_300_lines() -> None:
    long = {m: n for m, p in modules().items() if (n := len(p.read_text().splitlines())) > 300}
    assert not long, f"split these along a real boundary: {long}"


def test_the_rule_catches_an_adapter_importing_the_core(tmp_path: Path) -> None:
    """The check itself can fail: a core import in an adapter's source is found."""
    source = tmp_path / "adapter.py"
    source.write_text("from shared.poll import Poller\nfrom shared.model import Secret\n")
    assert project_imports(source, modules()) == {"shared.poll", "shared.model"}
    assert layer_of("shared.poll") not in ALLOWED["adapters"]
