"""Identities' flags are kept by the values of the traits segments read
(sdk_documents._identity_flags_json): an answer from what was kept is the answer an evaluation
of its own would give, for values Python calls equal but conditions do not (1, 1.0, true, "1";
0.0 and -0.0), and nothing is kept when the flags may depend on the identifier too."""

import pytest

from tests.api.conftest import set_override
from webapp.services.platform import evaluation, sdk_documents

# (rules of a segment that overrides a flag, the traits it reads or None: not kept)
READS = [
    ([{"type": "ALL", "rules": [], "conditions": [
        {"property": "plan", "operator": "EQUAL", "value": "pro"}]}], ("plan",)),
    ([{"type": "ANY", "conditions": [], "rules": [{"type": "ALL", "rules": [], "conditions": [
        {"property": "age", "operator": "GREATER_THAN", "value": "30"},
        {"property": "country", "operator": "IS_SET", "value": None}]}]}], ("age", "country")),
    ([{"type": "ALL", "rules": [], "conditions": [
        {"property": "", "operator": "PERCENTAGE_SPLIT", "value": "50"}]}], None),
    ([{"type": "ALL", "rules": [], "conditions": [
        {"property": "plan", "operator": "PERCENTAGE_SPLIT", "value": "50"}]}], None),
    ([{"type": "ALL", "rules": [], "conditions": [
        {"property": "$.identity.identifier", "operator": "EQUAL", "value": "ada"}]}], None),
]


@pytest.mark.parametrize(("rules", "read"), READS)
def test_the_traits_read_are_those_of_the_overriding_segments(make, platform, rules, read):
    segment = make.segment(platform.project, "tested", rules)
    set_override(platform.development, platform.banner, segment, True, "tested")
    docs = _documents(platform)
    expected = None if read is None else tuple(sorted({"plan", *read}))  # + the fixture's "Pro"
    assert docs.trait_keys_read == expected


def test_a_flag_with_variants_depends_on_the_identifier():
    context = {"environment": {"key": "k", "name": "n"}, "segments": {}, "features": {
        "f": {"key": "1", "name": "f", "enabled": True, "value": "a",
              "variants": [{"value": "b", "weight": 50, "priority": 1}]}}}
    assert evaluation.trait_keys_read(context) is None


IDENTITIES = [
    {"plan": "pro"}, {"plan": "free"}, {}, {"plan": "pro", "n": 1}, {"n": True}, {"n": 1.0},
    {"n": "1"}, {"n": 0.0}, {"n": -0.0}, {"n": 0}, {"n": False}, {"n": "-0.0"},
    {"plan": "pro", "n": True}, {"plan": "x" * 150}, {"plan": "pro"}, {"n": -0.0}, {"n": True},
]


def test_kept_flags_are_those_an_evaluation_gives(make, platform):
    ones = make.segment(platform.project, "ones", [{"type": "ALL", "rules": [], "conditions": [
        {"property": "n", "operator": "EQUAL", "value": "1"}]}])
    signed = make.segment(platform.project, "signed", [{"type": "ALL", "rules": [], "conditions": [
        {"property": "n", "operator": "REGEX", "value": "-"}]}])
    trues = make.segment(platform.project, "trues", [{"type": "ALL", "rules": [], "conditions": [
        {"property": "n", "operator": "EQUAL", "value": "true"}]}])
    set_override(platform.development, platform.banner, ones, True, "one", priority=0)
    set_override(platform.development, platform.banner, signed, True, "signed", priority=1)
    set_override(platform.development, platform.banner, trues, True, "true", priority=2)
    docs = _documents(platform)
    assert docs.trait_keys_read == ("n", "plan")
    for round_ in range(2):  # the second answers from what the first kept
        for number, traits in enumerate(IDENTITIES):
            kept = sdk_documents.identity_json(docs, f"user-{number}", traits)
            assert kept == _evaluated(docs, f"user-{number}", traits), (round_, traits)
    flags = {sdk_documents._flags_json(docs, "u", traits) for traits in IDENTITIES}
    assert len(flags) >= 4  # the segments do tell these identities apart


def _documents(platform) -> sdk_documents.Documents:
    ref = sdk_documents.find_environment(platform.development.client_key)
    assert ref is not None
    return sdk_documents.documents_for(ref)


def _evaluated(docs, identifier, traits) -> bytes:
    """The answer without anything kept: the evaluation of its own."""
    flags = sdk_documents._flags_json(docs, identifier, traits)
    trait_list = [{"trait_key": key, "trait_value": value} for key, value in traits.items()]
    return b"".join((b'{"identifier":', sdk_documents._dumps(identifier), b',"flags":', flags,
                     b',"traits":', sdk_documents._dumps(trait_list), b"}"))
