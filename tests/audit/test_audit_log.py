"""The audit log service: masking, diffs, keyset pages, batched export."""

from webapp.services.governance import audit_log, audit_reading
from webapp.services.governance.audit_log import AuditFilter, DiffLine
from webapp.services.governance.audit_names import Names


def test_mask_hides_values_under_secret_looking_keys_at_any_depth():
    value = {"name": "x", "api_key": "k1", "Token": "t", "nested": [{"client_secret": "s"}],
             "password_hash": "p", "settings": {"enabled": True, "serverKey": None}}
    assert audit_log.mask(value) == {
        "name": "x", "api_key": audit_log.MASK, "Token": audit_log.MASK,
        "nested": [{"client_secret": audit_log.MASK}], "password_hash": audit_log.MASK,
        "settings": {"enabled": True, "serverKey": None},
    }
    assert audit_log.mask("plain") == "plain"


def test_diff_lists_changed_keys_only_in_words():
    names = Names()
    assert audit_reading.diff({"enabled": False, "value": 1}, {"enabled": True, "value": 1},
                              names) == [DiffLine("on/off", "off", "on")]
    assert audit_reading.diff(None, {"name": "a"}, names) == [DiffLine("name", None, "a")]
    assert audit_reading.diff({"gone": 1}, {}, names) == [DiffLine("gone", "1", None)]
    assert audit_reading.diff(3, 4, names) == [DiffLine("", "3", "4")]
    assert audit_reading.diff(None, None, names) == []
    assert audit_reading.diff({"a": 1}, {"a": 1}, names) == []


def test_pages_walk_the_log_by_keyset_both_ways(app, project, log):
    ids = [e.id for e in log.many(project, 12, event_type="BULK")]
    only_bulk = AuditFilter(event_type="BULK")
    first = audit_log.page(project.id, only_bulk, masked=False, size=5)
    assert [e.id for e in first.entries] == ids[::-1][:5]
    assert first.newer_cursor is None and first.older_cursor == ids[7]
    second = audit_log.page(project.id, only_bulk, masked=False, size=5, before=first.older_cursor)
    assert [e.id for e in second.entries] == ids[::-1][5:10]
    assert second.newer_cursor == ids[11 - 5]
    last = audit_log.page(project.id, only_bulk, masked=False, size=5, before=second.older_cursor)
    assert [e.id for e in last.entries] == ids[1::-1]
    assert last.older_cursor is None and last.newer_cursor == ids[1]
    back = audit_log.page(project.id, only_bulk, masked=False, size=5, after=last.newer_cursor)
    assert [e.id for e in back.entries] == ids[::-1][5:10]
    top = audit_log.page(project.id, only_bulk, masked=False, size=5, after=ids[9])
    assert [e.id for e in top.entries] == ids[::-1][:5]  # reaching the top shows a full page


def test_export_reads_in_batches_and_keeps_every_row(app, project, log):
    log.many(project, 25, event_type="BULK")
    chunks = list(audit_log.export_csv(project.id, AuditFilter(event_type="BULK"), masked=False,
                                       batch=10))
    assert len(chunks) == 1 + 3  # header, then one chunk per batch query
    lines = "".join(chunks).splitlines()
    assert lines[0] == ",".join(audit_log.CSV_COLUMNS)
    assert len(lines) == 26
    assert lines[1].split(",")[8] == "entry 24"


def test_filter_choices_list_present_event_types_and_actors(app, project, log, make):
    log.entry(project, "ZETA_EVENT")
    log.entry(project, "ALPHA_EVENT")
    other = make.project("Other")
    log.entry(other, "OTHER_ONLY")
    choices = audit_log.filter_choices(project.id)
    assert "ALPHA_EVENT" in choices.event_types and "ZETA_EVENT" in choices.event_types
    assert "OTHER_ONLY" not in choices.event_types
    assert choices.event_types == sorted(choices.event_types)
    assert "someone@example.com" in choices.actors
    assert [name for _id, name in choices.environments] == ["Development", "Staging", "Production"]


def test_time_ranges_are_exact_when_ids_and_times_disagree(app, project, log):
    from datetime import timedelta

    from tests.audit.conftest import T0

    late = log.entry(project, "ORDER", at=T0 + timedelta(days=2))  # lower id, later time
    early = log.entry(project, "ORDER", at=T0)
    middle = log.entry(project, "ORDER", at=T0 + timedelta(days=1))
    window = AuditFilter(event_type="ORDER", since=T0 + timedelta(hours=1),
                         until=T0 + timedelta(days=3))
    found = audit_log.page(project.id, window, masked=False)
    assert [e.id for e in found.entries] == [middle.id, late.id]
    assert early.id not in [e.id for e in found.entries]
    none = audit_log.page(project.id, AuditFilter(since=T0 - timedelta(days=9),
                                                  until=T0 - timedelta(days=8)), masked=False)
    assert none.entries == []
