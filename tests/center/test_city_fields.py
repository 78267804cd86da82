"""The city's record (GB/T 39046 Table 9 field names, configured codes) and its batch decoder."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from center.city import fields
from center.city.fields import CityError, check_record, city_record, encode_batch, parse_batch
from protocol.codes import CodeMap

ROW = {"id": "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "center": "C1", "window": "W01", "device": "d1", "seq": 7,
       "ts": "2026-12-01T23:59:58.120+08:00", "kind": "case", "level": "dissatisfied", "channel": "sms",
       "case_id": "CASE-1", "item_code": "ITEM-9", "staff": "S01", "applicant": "tok-123",
       "reasons": "501,502", "catalog": "2026.1", "first": 1, "received": 1.0, "flags": None}
# Written out from the texts (not computed): a reordered enum or mapping cannot go unnoticed.
GBT39046 = {"very_satisfied": 1, "satisfied": 2, "basically_satisfied": 3, "dissatisfied": 4,
            "very_dissatisfied": 5}
PROVINCIAL = {"very_satisfied": 5, "satisfied": 4, "basically_satisfied": 3, "dissatisfied": 2,
              "very_dissatisfied": 1}
ZH = {"very_satisfied": "非常满意", "satisfied": "满意", "basically_satisfied": "基本满意",
      "dissatisfied": "不满意", "very_dissatisfied": "非常不满意"}


def test_a_rating_in_the_platforms_field_names():
    r = city_record(ROW, CodeMap.create(), area="310101")
    assert r == {"id": ROW["id"], "办件编号": "CASE-1", "评价渠道": 7, "评价人": "tok-123", "评价时间": "20261201T235958",
                 "评价次数": 1, "满意度": "不满意", "满意度代码": 4, "文字评价": "", "行政区划": "310101",
                 "设备": "d1", "窗口": "W01", "事项编码": "ITEM-9", "经办人": "S01", "评价内容": "501,502",
                 "评价内容版本": "2026.1"}
    assert set(fields.TABLE9) <= set(r)
    assert check_record(r) is r


@pytest.mark.parametrize("scheme,table", [("gbt39046", GBT39046), ("provincial", PROVINCIAL)])
def test_level_codes_follow_the_configured_order(scheme, table):
    codes = CodeMap.create(scheme)
    for level, number in table.items():
        r = city_record({**ROW, "level": level}, codes)
        assert r["满意度代码"] == number and r["满意度"] == ZH[level]


def test_channel_codes_follow_the_configured_channels():
    assert city_record({**ROW, "channel": "sms"}, CodeMap.create())["评价渠道"] == 7
    assert city_record({**ROW, "channel": "sms"}, CodeMap.create(channels={"sms": 6}))["评价渠道"] == 6
    assert city_record({**ROW, "channel": "touch"}, CodeMap.create())["评价渠道"] == 4
    assert city_record({**ROW, "channel": "qr"}, CodeMap.create("provincial"))["评价渠道"] == 3


def test_a_later_rating_of_a_case_is_the_second_and_a_hall_rating_has_no_case_number():
    assert city_record({**ROW, "first": 0}, CodeMap.create())["评价次数"] == 2
    r = city_record({**ROW, "case_id": None, "kind": "hall", "applicant": None, "reasons": None}, CodeMap.create())
    assert (r["办件编号"], r["评价人"], r["评价内容"]) == ("", "", "")


def test_an_applicant_token_too_long_for_the_field_is_left_out_not_cut():
    assert city_record({**ROW, "applicant": "x" * 31}, CodeMap.create())["评价人"] == ""


def test_the_platform_time_is_the_records_own_local_time():
    assert fields.platform_time("2026-01-02T03:04:05+08:00") == "20260102T030405"
    assert fields.platform_time("2026-01-02T03:04:05.999-05:00") == "20260102T030405"
    assert fields.day_of("2026-01-02T03:04:05+08:00") == "2026-01-02"


def test_a_batch_round_trips_and_a_bad_record_is_refused_alone():
    good = city_record(ROW, CodeMap.create())
    bad = {**city_record({**ROW, "id": "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c"}, CodeMap.create()), "满意度代码": 9}
    center, items = parse_batch(encode_batch("C1", [good, bad, {"no": "id"}]))
    assert center == "C1"
    assert items[0] == (good["id"], good)
    assert items[1][0] == bad["id"] and "满意度代码" in items[1][1]
    assert len(items) == 2   # a record without an id cannot be answered


@pytest.mark.parametrize("mutate,reason", [
    (lambda m: m.update(v=2), "wrong_version"), (lambda m: m.update(v=True), "wrong_version"),
    (lambda m: m.update(type="rating"), "wrong_type"), (lambda m: m.update(center="a/b"), "bad_center"),
    (lambda m: m.update(records=[]), "bad_records"), (lambda m: m.update(records={}), "bad_records"),
])
def test_a_batch_that_cannot_be_read_as_a_whole_is_refused(mutate, reason):
    msg = json.loads(encode_batch("C1", [city_record(ROW, CodeMap.create())]))
    mutate(msg)
    with pytest.raises(CityError) as e:
        parse_batch(json.dumps(msg).encode())
    assert e.value.reason == reason


@pytest.mark.parametrize("key,value", [("评价时间", "20261332T000000"), ("评价时间", "2026-12-01"), ("行政区划", "31010a"),
                                       ("设备", "a/b"), ("评价渠道", "7"), ("评价次数", 0), ("满意度", "好"),
                                       ("办件编号", "x" * 51), ("文字评价", "a\nb"), ("评价内容", "501;502")])
def test_each_field_is_checked(key, value):
    with pytest.raises(CityError):
        check_record({**city_record(ROW, CodeMap.create()), key: value})


def test_a_missing_or_unknown_field_is_refused():
    r = city_record(ROW, CodeMap.create())
    with pytest.raises(CityError, match="missing_field"):
        check_record({k: v for k, v in r.items() if k != "满意度"})
    with pytest.raises(CityError, match="unknown_field"):
        check_record({**r, "phone": "13800000000"})


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_any_bytes_are_a_batch_or_a_city_error(payload):
    try:
        center, items = parse_batch(payload)
    except CityError:
        return
    assert all(isinstance(rid, str) for rid, _ in items)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                           | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                        max_size=4), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(fields.TABLE9 + fields.EXTRA), json_values, max_size=6))
def test_any_changed_record_is_taken_whole_or_refused_with_a_city_error(changes):
    record = {**city_record(ROW, CodeMap.create()), **changes}
    payload = json.dumps({"v": 1, "type": "city_records", "center": "C1", "records": [record]}).encode()
    try:
        _, items = parse_batch(payload)
    except CityError:
        return
    for _, got in items:
        assert isinstance(got, str) or check_record(got) == record
