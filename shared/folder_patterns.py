"""A mailbox's folders by pattern, resolved against the server's folder list (one LIST a run).

Entries of a mailbox's folder list:

- a folder name: that folder, whether or not the server lists it (a missing one is reported);
- ``*``: every folder the server lists, less the default exclusions below;
- ``<folder><delimiter>*`` (``INBOX/*``): every folder under that one, written with the
  server's hierarchy delimiter (``/`` on Exchange); the folder itself is not included;
- ``!<folder>``: not that folder, nor any folder under it (``!<folder>/*``: only those under
  it); exclusions narrow the patterns above and never an entry named outright. A folder
  whose name starts with ``!`` is written ``\\!name``.

Any other entry is a folder name, even one with ``*`` in it (``*star``, ``a*b``).

Names are matched as the server lists them, decoded from modified UTF-7, case-sensitively
(``INBOX`` in any case). The default exclusions of ``*`` are Exchange's folders that hold no
mail to deliver (Deleted Items, Junk Email, Drafts, Outbox, Sync Issues, Conversation
History, the hidden Files folder, and the calendar, contact, journal, note and task
folders), each with the folders under it, matched in any case, plus any folder the server
marks ``\\Trash``, ``\\Junk`` or ``\\Drafts`` (so localized names are excluded too). Naming
one of them outright, or with ``<folder>/*``, polls it anyway. Folders the server marks
``\\Noselect`` or ``\\NonExistent`` hold no messages and are never polled.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Literal

EVERY_FOLDER = "*"
EXCLUDE = "!"
DEFAULT_EXCLUDED = ("Deleted Items", "Junk Email", "Drafts", "Outbox", "Sync Issues",
                    "Conversation History", "Files", "Calendar", "Contacts", "Journal", "Notes",
                    "Tasks")
DEFAULT_EXCLUDED_ROLES = frozenset({"\\TRASH", "\\JUNK", "\\DRAFTS"})
_UNSELECTABLE = frozenset({"\\NOSELECT", "\\NONEXISTENT"})
_DEFAULT_EXCLUDED_KEYS = frozenset(name.casefold() for name in DEFAULT_EXCLUDED)


@dataclass(frozen=True)
class ListedFolder:
    """One folder as LIST gives it: decoded name, hierarchy delimiter and attributes."""

    name: str
    delimiter: str | None = "/"
    flags: frozenset[str] = field(default_factory=frozenset)

    @property
    def selectable(self) -> bool:
        return not {f.upper() for f in self.flags} & _UNSELECTABLE

    @property
    def default_role_excluded(self) -> bool:
        return bool({f.upper() for f in self.flags} & DEFAULT_EXCLUDED_ROLES)


EntryKind = Literal["name", "every", "subtree", "exclude"]


@dataclass(frozen=True)
class FolderEntry:
    """One entry of a folder list, parsed; ``path`` is the folder it names or is rooted at."""

    text: str
    kind: EntryKind
    path: str = ""
    # The delimiter written before '*' in a subtree ('/' in INBOX/*); None otherwise.
    delimiter: str | None = None
    # For an exclusion: whether it spares the folder itself (!X/* excludes only below X).
    below_only: bool = False


def parse_entry(text: str) -> FolderEntry:
    """The entry ``text``; check ``entry_problem`` first."""
    if text.startswith("\\" + EXCLUDE):
        return FolderEntry(text, "name", text[1:])
    if text == EVERY_FOLDER:
        return FolderEntry(text, "every")
    if text.startswith(EXCLUDE):
        inner = parse_entry(text[1:])
        below = inner.kind == "subtree"
        return FolderEntry(text, "exclude", inner.path, inner.delimiter, below)
    if _is_subtree(text):
        return FolderEntry(text, "subtree", text[:-2], text[-2])
    return FolderEntry(text, "name", text)


def _is_subtree(text: str) -> bool:
    """``<folder><delimiter>*``: one '*', last, after a delimiter (not a letter, digit or space)."""
    return (len(text) >= 3 and text.count(EVERY_FOLDER) == 1 and text.endswith(EVERY_FOLDER)
            and not text[-2].isalnum() and not text[-2].isspace())


def entry_problem(text: str) -> str | None:
    """Why ``text`` cannot be an entry, or None. Any entry that is not ``*``, a subtree or an
    exclusion is a folder name, whatever it holds (a folder may be called ``*star``)."""
    if text.startswith(EXCLUDE) and text[1:].strip() in ("", EVERY_FOLDER):
        return f"{text!r} excludes nothing usable: write !<folder>, e.g. !Junk Email"
    return None


def named_folders(entries: Sequence[str]) -> list[str]:
    """The folders named outright (not patterns or exclusions)."""
    return [parse_entry(e).path for e in entries
            if entry_problem(e) is None and parse_entry(e).kind == "name"]


def uses_patterns(entries: Sequence[str]) -> bool:
    """Whether any entry is a pattern or an exclusion (so the server's folders must be listed)."""
    return any(parse_entry(e).kind != "name" for e in entries if entry_problem(e) is None)


def selection_problems(entries: Sequence[str]) -> list[str]:
    """What is wrong with a folder list as a whole (each entry, and how they combine)."""
    problems = [p for e in entries if (p := entry_problem(e)) is not None]
    if problems:
        return problems
    parsed = [parse_entry(e) for e in entries]
    exclusions = [e for e in parsed if e.kind == "exclude"]
    if exclusions and not any(e.kind in ("every", "subtree") for e in parsed):
        problems.append(f"{', '.join(repr(e.text) for e in exclusions)} narrow(s) a pattern (* or "
                        "<folder>/*), and none is listed: list * or <folder>/*, or drop the exclusion")
    names = {_key(e.path) for e in parsed if e.kind == "name"}
    for exclusion in exclusions:
        if not exclusion.below_only and _key(exclusion.path) in names:
            problems.append(f"{exclusion.path!r} is both listed and excluded ({exclusion.text!r})")
    return problems


def is_under(name: str, ancestor: str, delimiter: str | None) -> bool:
    """Whether ``name`` is ``ancestor`` or a folder below it (INBOX matched in any case)."""
    if _key(name) == _key(ancestor):
        return True
    if not delimiter or len(name) <= len(ancestor) + len(delimiter):
        return False
    head, rest = name[:len(ancestor)], name[len(ancestor):]
    return rest.startswith(delimiter) and _key(head) == _key(ancestor)


@dataclass(frozen=True)
class Resolution:
    """The folders to poll, each with the entry that selected it, and what could not be used."""

    folders: tuple[tuple[str, str], ...]
    # (entry, why it selects nothing)
    problems: tuple[tuple[str, str], ...] = ()


def resolve_folders(entries: Sequence[str], listed: Sequence[ListedFolder], *,
                    never: Collection[str] = ()) -> Resolution:
    """The folders ``entries`` select among ``listed``: names outright first, in their order,
    then every pattern match (INBOX first, then by name). ``never`` are never polled."""
    delimiter = next((f.delimiter for f in listed if f.delimiter), "/")
    parsed = [parse_entry(e) for e in entries]
    barred = {_key(n) for n in never}
    chosen: list[tuple[str, str]] = []
    problems: list[tuple[str, str]] = []
    for entry in parsed:
        if entry.delimiter is not None and entry.delimiter != delimiter:
            problems.append((entry.text, f"matches nothing: the server's hierarchy delimiter is "
                                         f"{delimiter!r}, not {entry.delimiter!r}"))
        if entry.kind == "name" and _key(entry.path) not in barred:
            chosen.append((entry.path, entry.text))
    taken = {_key(name) for name, _ in chosen}
    role_roots = [f.name for f in listed if f.default_role_excluded]
    matched: list[tuple[str, str]] = []
    for folder in listed:
        if not folder.selectable or _key(folder.name) in taken | barred:
            continue
        selector = _pattern_selecting(folder.name, parsed, delimiter, role_roots)
        if selector is not None:
            matched.append((folder.name, selector))
            taken.add(_key(folder.name))
    matched.sort(key=lambda pair: (_key(pair[0]) != "INBOX", pair[0].casefold(), pair[0]))
    return Resolution(tuple(chosen + matched), tuple(problems))


def matching_entry(folder: str, entries: Sequence[str], *, delimiter: str = "/") -> str | None:
    """The entry that selects ``folder`` (for status: which action applies), without a LIST."""
    parsed = [parse_entry(e) for e in entries if entry_problem(e) is None]
    for entry in parsed:
        if entry.kind == "name" and _key(entry.path) == _key(folder):
            return entry.text
    return _pattern_selecting(folder, parsed, delimiter, [])


def _pattern_selecting(name: str, parsed: Sequence[FolderEntry], delimiter: str,
                       role_roots: Sequence[str]) -> str | None:
    for entry in parsed:
        if entry.kind != "exclude" or entry.delimiter not in (None, delimiter):
            continue
        if is_under(name, entry.path, delimiter) and not (entry.below_only
                                                          and _key(name) == _key(entry.path)):
            return None
    for entry in parsed:
        if (entry.kind == "subtree" and entry.delimiter == delimiter
                and _key(name) != _key(entry.path) and is_under(name, entry.path, delimiter)):
            return entry.text
        if entry.kind == "every" and not _default_excluded(name, delimiter, role_roots):
            return entry.text
    return None


def _default_excluded(name: str, delimiter: str, role_roots: Sequence[str]) -> bool:
    top = name.split(delimiter, 1)[0] if delimiter else name
    return top.casefold() in _DEFAULT_EXCLUDED_KEYS or any(
        is_under(name, root, delimiter) for root in role_roots)


def _key(name: str) -> str:
    """INBOX is case-insensitive in IMAP; every other name is compared as written."""
    return "INBOX" if name.isascii() and name.upper() == "INBOX" else name
