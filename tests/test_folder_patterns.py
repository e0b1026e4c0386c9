"""Folders by pattern: `*` with its default exclusions, subtrees, exclusions, and what is never polled."""

from __future__ import annotations

import pytest

from shared.folder_patterns import (
    ListedFolder,
    entry_problem,
    matching_entry,
    resolve_folders,
    selection_problems,
    uses_patterns,
)

NOSELECT = frozenset({"\\Noselect", "\\HasChildren"})

# What Exchange Online lists for a typical mailbox, plus nested, non-ASCII and twin folders.
EXCHANGE = [ListedFolder(name) for name in (
    "Archive", "Calendar", "Calendar/Birthdays", "Contacts", "Conversation History", "Deleted Items",
    "Deleted Items/Old project", "Drafts", "Files", "INBOX", "INBOX/Invoices", "INBOX/Invoices/2024",
    "Journal", "Junk Email", "Notes", "Outbox", "Sent Items", "Sync Issues", "Sync Issues/Conflicts",
    "Sync Issues/Local Failures", "Sync Issues/Server Failures", "Tasks", "Projekte/Übersicht",
    "日本語", "Test", "TEST", 'Quote "this" & that',
)] + [ListedFolder("Projekte", "/", NOSELECT)]


def names(entries: list[str], listed: list[ListedFolder] = EXCHANGE, **kwargs) -> list[str]:
    return [name for name, _ in resolve_folders(entries, listed, **kwargs).folders]


def test_every_folder_less_the_default_exclusions_inbox_first():
    assert names(["*"]) == [
        "INBOX", "Archive", "INBOX/Invoices", "INBOX/Invoices/2024", "Projekte/Übersicht",
        'Quote "this" & that', "Sent Items", "TEST", "Test", "日本語"]


def test_a_subtree_is_the_folders_under_one_not_the_folder_itself():
    assert names(["INBOX/*"]) == ["INBOX/Invoices", "INBOX/Invoices/2024"]
    assert names(["INBOX", "INBOX/*"]) == ["INBOX", "INBOX/Invoices", "INBOX/Invoices/2024"]
    assert names(["inbox/*"]) == ["INBOX/Invoices", "INBOX/Invoices/2024"]  # INBOX in any case


def test_exclusions_take_a_folder_and_everything_under_it_or_only_what_is_under_it():
    assert "INBOX/Invoices" not in names(["*", "!INBOX/Invoices"])
    assert "INBOX/Invoices/2024" not in names(["*", "!INBOX/Invoices"])
    spared = names(["*", "!INBOX/Invoices/*"])
    assert "INBOX/Invoices" in spared and "INBOX/Invoices/2024" not in spared


def test_naming_a_default_exclusion_outright_polls_it():
    chosen = names(["*", "Drafts", "Sync Issues/*"])
    assert chosen[:1] == ["Drafts"]
    assert {"Sync Issues/Conflicts", "Sync Issues/Local Failures", "Sync Issues/Server Failures"} <= set(chosen)
    assert "Sync Issues" not in chosen and "Deleted Items" not in chosen


def test_localized_special_folders_are_excluded_by_their_attributes_with_their_subfolders():
    listed = [ListedFolder("INBOX"), ListedFolder("Gelöschte Elemente", "/", frozenset({"\\Trash"})),
              ListedFolder("Gelöschte Elemente/Alt"), ListedFolder("Junk-E-Mail", "/", frozenset({"\\Junk"})),
              ListedFolder("Entwürfe", "/", frozenset({"\\Drafts"})), ListedFolder("Gesendete Elemente")]
    assert names(["*"], listed) == ["INBOX", "Gesendete Elemente"]


def test_move_targets_and_unselectable_folders_are_never_polled():
    assert "Archive" not in names(["*"], never=["Archive"])
    assert "Projekte" not in names(["*"])
    assert names(["INBOX", "Archive"], never=["Archive"]) == ["INBOX"]


def test_case_twins_are_two_folders_and_names_are_matched_as_written():
    assert {"Test", "TEST"} <= set(names(["*"]))
    assert names(["*", "!Test"]).count("TEST") == 1 and "Test" not in names(["*", "!Test"])


def test_a_subtree_written_with_another_delimiter_selects_nothing_and_says_why():
    dotted = [ListedFolder("INBOX", "."), ListedFolder("INBOX.Sub", ".")]
    resolution = resolve_folders(["INBOX/*"], dotted)
    assert resolution.folders == ()
    [(entry, why)] = resolution.problems
    assert entry == "INBOX/*" and "'.'" in why
    assert names(["INBOX.*"], dotted) == ["INBOX.Sub"]


def test_each_folder_remembers_the_entry_that_selected_it():
    resolution = resolve_folders(["INBOX", "INBOX/*", "*"], EXCHANGE)
    chosen = dict(resolution.folders)
    assert chosen["INBOX"] == "INBOX" and chosen["INBOX/Invoices"] == "INBOX/*" and chosen["Archive"] == "*"
    assert matching_entry("INBOX/Invoices", ["INBOX", "INBOX/*", "*"]) == "INBOX/*"
    assert matching_entry("Deleted Items", ["*"]) is None
    assert matching_entry("Archive", ["*", "!Archive"]) is None


def test_an_escaped_bang_names_a_folder_that_starts_with_one():
    listed = [ListedFolder("!Important"), ListedFolder("INBOX")]
    assert names(["\\!Important"], listed) == ["!Important"]
    assert not uses_patterns(["\\!Important", "INBOX"])


@pytest.mark.parametrize("entry", ["*", "INBOX/*", "INBOX.*", "!Junk Email", "!INBOX/Old/*", "Plain name",
                                   "\\!Bang"])
def test_valid_entries(entry):
    assert entry_problem(entry) is None


@pytest.mark.parametrize("entry", ["*star", "IN*BOX", "INBOX*", "a*/b", "*/x", "INBOX/**", "x *"])
def test_any_other_entry_is_a_folder_name_even_with_a_star(entry):
    assert entry_problem(entry) is None and not uses_patterns([entry])
    listed = [ListedFolder(entry), ListedFolder("INBOX")]
    assert names([entry], listed) == [entry]


@pytest.mark.parametrize("entry", ["!", "!*", "! "])
def test_an_exclusion_of_nothing_is_named(entry):
    problem = entry_problem(entry)
    assert problem is not None and repr(entry) in problem


def test_exclusions_need_a_pattern_and_cannot_contradict_a_name():
    [lonely] = selection_problems(["INBOX", "!Junk Email"])
    assert "narrow" in lonely
    [both] = selection_problems(["*", "Archive", "!Archive"])
    assert "both listed and excluded" in both
    assert selection_problems(["*", "INBOX/Keep", "!INBOX/Keep/*"]) == []
