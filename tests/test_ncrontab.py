"""POLL_SCHEDULE: NCRONTAB as the Functions timer trigger reads it, each mistake named with its field."""

from __future__ import annotations

import pytest

from shared.errors import ConfigurationError
from shared.ncrontab import ncrontab_problems
from shared.settings import Settings
from tests.test_settings import GOOD


def schedule_problem(value: str) -> str:
    """The one ConfigurationError line, which names POLL_SCHEDULE and says each thing wrong."""
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_mapping(GOOD | {"POLL_SCHEDULE": value})
    [line] = caught.value.problems
    assert line.startswith("POLL_SCHEDULE is "), line
    return line


@pytest.mark.parametrize("schedule", [
    "0 */5 * * * *", "0 0 * * * *", "0 0 */2 * * *", "0 0 9-17 * * *", "0 30 9 * * 1-5",
    "0 30 9 * Jan Mon", "5-7 * * * * *", "5,8,10 * * * * *", "0 0/15 * * * *", "0 0-30/10 * * * *",
    "0 0 0 29 2 *", "0 0 0 1 january-MARCH monday,fri", "  0 */5  * * * *  ", "59 59 23 31 12 6",
    "0 0 12 * Dec Sat", "0 0 0 31 1-2 *", "0 */60 * * * *",
])
def test_schedules_the_timer_trigger_accepts_pass(schedule):
    assert ncrontab_problems(schedule) == []
    assert Settings.from_mapping(GOOD | {"POLL_SCHEDULE": schedule}).poll_schedule == schedule.strip()


def test_every_out_of_range_field_is_named_with_its_range():
    text = schedule_problem("99 99 99 99 99 99")
    for field, span in (("second", "0-59"), ("minute", "0-59"), ("hour", "0-23"), ("day", "1-31"),
                        ("month", "1-12 or Jan-Dec"), ("day-of-week", "0-6 (0 is Sunday) or Sun-Sat")):
        assert f"{field} field '99': 99 is out of range; expected {span}" in text


def test_words_are_refused_field_by_field():
    text = schedule_problem("a b c d e f")
    for field, token, span in (("second", "a", "0-59"), ("minute", "b", "0-59"), ("hour", "c", "0-23"),
                               ("day", "d", "1-31"), ("month", "e", "1-12 or Jan-Dec")):
        assert f"{field} field '{token}': '{token}' is not a" in text and f"expected {span}" in text
    assert "day-of-week" not in text  # NCrontab reads 'f' as Friday, an unambiguous prefix


@pytest.mark.parametrize(("schedule", "expected"), [
    ("0 */5 * * * ?", "day-of-week field '?': '?' is not a number or a day-of-week name"),
    ("0 */0 * * * *", "the step 0 in '*/0' is not from 1 to 60"),
    ("*/90 * * * * *", "the step 90"),
    ("0 */x * * * *", "the step after '/' in '*/x' is not a whole number"),
    ("0 0 22-2 * * *", "the range '22-2' runs backwards"),
    ("0 0 0 * Ju *", "'Ju' could be June or July"),
    ("0 0 0 * * T", "'T' could be Tuesday or Thursday"),
    ("0 0 0 * Smarch *", "'Smarch' is not a month name; expected 1-12 or Jan-Dec"),
    ("0 0 0 31 Feb *", "never fire"),
    ("0 0 0 31 Apr,Jun *", "never fire"),
    ("0 0 0 30 2 *", "never fire"),
    ("0 0 0 * * 7", "7 is out of range; expected 0-6 (0 is Sunday) or Sun-Sat"),
    ("0 1,,2 * * * *", "a list has an empty item"),
    ("0 5- * * * *", "a value is missing"),
    ("0 ** * * * *", "'**' is not a number"),
    ("0 1-2-3 * * * *", "minute field '1-2-3'"),
    ("0 \u0665 * * * *", "is not a number"),
    ("*/5 * * * *", "it has 5 field(s); an NCRONTAB expression has six fields"),
    ("0 0 */5 * * * *", "it has 7 field(s)"),
    ("00:05:00", "TimeSpan, which Azure Functions accepts only on an App Service plan"),
    ("1.00:00:00", "Flex Consumption"),
    ("0\t*/5 * * * *", "splits fields on spaces only"),
])
def test_each_mistake_is_explained(schedule, expected):
    problem = schedule_problem(schedule)
    assert expected in problem, problem


def test_a_very_long_value_is_cut_in_the_message():
    problem = schedule_problem("0 " + "1," * 3000 + "x * * * *")
    assert len(problem) < 400, problem
