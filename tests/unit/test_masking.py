"""Resident ID numbers in log lines (issue #17, "Logs leak IDs"): whatever shape an ID takes in what
is logged (a dict key, an integer, full-width digits, deep in nested data, in an exception, cut by
a long value's truncation), the line written shows no more of it than its masked form."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable, Iterator
from datetime import date

import pytest
import structlog

from shared.domain.identity import make_resident_id
from shared.events.logs import configure_logging, get_logger, mask_text

ID = make_resident_id("350421", date(1980, 5, 17), 123)  # 35042119800517123X
MASKED = "3504**********123X"
FULL_WIDTH = ID.translate(str.maketrans("0123456789X", "０１２３４５６７８９Ｘ"))


def shows_more_than_masked(text: str) -> bool:
    """Whether ``text`` holds any five characters in a row of the ID (ASCII or full-width): more
    than its masked form (3504, 123X) shows."""
    return any(number[i:i + 5] in text for number in (ID, FULL_WIDTH) for i in range(len(ID) - 4))


@pytest.fixture
def written() -> Iterator[Callable[[], str]]:
    """Logging configured as a service configures it, into a buffer; the previous setup is put
    back afterwards (handlers, levels and propagation of every logger, structlog's defaults)."""
    import faststream  # noqa: F401 - importing it gives its logger a plain-text handler, as in a service

    loggers = [logging.getLogger()] + [x for x in logging.root.manager.loggerDict.values() if isinstance(x, logging.Logger)]
    saved = [(x, list(x.handlers), x.propagate, x.level) for x in loggers]
    buffer = io.StringIO()
    configure_logging("masking-test", json_lines=True, stream=buffer)
    yield buffer.getvalue
    for logger, handlers, propagate, level in saved:
        logger.handlers[:] = handlers
        logger.propagate, logger.level = propagate, level
    logging.captureWarnings(False)
    structlog.reset_defaults()


def test_an_id_used_as_a_dict_key_is_masked(written: Callable[[], str]) -> None:
    get_logger().info("members_counted", by_member={ID: 1})
    assert ID not in written() and MASKED in written()


def test_an_id_logged_as_an_integer_is_masked_also_when_split_from_its_check_character(written: Callable[[], str]) -> None:
    whole = make_resident_id("350421", date(1980, 5, 17), 124)  # a check digit, not X
    get_logger().info("member", whole=int(whole), first17=int(ID[:17]), check=ID[17])
    assert not shows_more_than_masked(written())


def test_an_id_in_full_width_digits_is_masked(written: Callable[[], str]) -> None:
    get_logger().info("member", note=f"身份证号{FULL_WIDTH}")
    assert not shows_more_than_masked(written()) and "３５０４" in written()


def test_an_id_deep_in_nested_lists_tuples_and_dicts_is_masked(written: Callable[[], str]) -> None:
    get_logger().info("batch", households=[{"members": ({"ids": [int(ID[:17]), ID]},)}])
    assert not shows_more_than_masked(written())


def test_an_exceptions_message_and_traceback_are_masked(written: Callable[[], str]) -> None:
    try:
        raise ValueError(f"member {ID[:17]} check {ID[17]} not found")  # an ID cut in two by the caller
    except ValueError:
        get_logger().exception("handler_failed")
    line = json.loads(written())
    assert "Traceback" in line["exception"] and not shows_more_than_masked(written())


def test_a_long_detail_cut_across_an_id_shows_no_more_than_the_ids_masked_form(written: Callable[[], str]) -> None:
    # The ID is placed across the cut at every offset: no cut leaves more of it than 3504 and 123X.
    for before in range(470, 501):
        get_logger().warning("dead_lettered", detail="k" * before + ID + "k" * 2000)
    lines = [json.loads(line) for line in written().splitlines()]
    assert len(lines) == 31 and all(len(line["detail"]) < 600 for line in lines)
    kept = " ".join(line["detail"].rsplit("…", 1)[0] for line in lines)  # (the cut says how much it left out)
    assert set(re.findall(r"\d+", kept)) <= {"3504", "123"}


def test_a_line_of_faststreams_own_logger_is_written_as_a_masked_json_line(written: Callable[[], str]) -> None:
    logging.getLogger("faststream").warning("header Nats-Msg-Id %s not valid", ID)
    line = json.loads(written())
    assert line["logger"] == "faststream" and line["service"] == "masking-test"
    assert line["event"] == f"header Nats-Msg-Id {MASKED} not valid"


def test_uvicorns_access_line_for_a_url_carrying_an_id_is_masked(written: Callable[[], str]) -> None:
    # As uvicorn writes it (uvicorn.protocols.http): client, method, path with query, version, status.
    logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET",
                                             f"/api/members/{ID}?again={FULL_WIDTH}", "1.1", 404)
    line = json.loads(written())
    assert line["logger"] == "uvicorn.access" and not shows_more_than_masked(written())


def test_a_line_that_cannot_be_formatted_is_reported_without_its_arguments(written: Callable[[], str],
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    # %d for a string: the line cannot be made. (Given to the configured handlers directly: pytest's
    # own handler, also on the root logger during a test, would raise the error instead.)
    record = logging.LogRecord("nats", logging.ERROR, __file__, 1, "member %d not found", (ID,), None)
    for handler in [h for h in logging.getLogger().handlers if not type(h).__module__.startswith("_pytest")]:
        handler.handle(record)
    assert not shows_more_than_masked(written() + capsys.readouterr().err)
    assert json.loads(written())["event"] == "log_line_failed"


def test_a_password_in_a_logged_url_is_masked_and_the_rest_of_the_url_kept() -> None:
    line = mask_text("service_starting nats=['nats://services:pw-services@127.0.0.1:4222', 'nats://n2:4222']")
    assert "pw-services" not in line
    assert "nats://services:***@127.0.0.1:4222" in line and "nats://n2:4222" in line
