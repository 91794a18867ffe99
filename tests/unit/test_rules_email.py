"""The email rule's fast path for plain ASCII addresses gives exactly email-validator's answer: the same
accepted address (as stored: lower case) or the same refusal, with the same message.

Differential: every address below, hand-picked and generated, goes through the rule's check and through
email-validator whole, and the two must agree."""

import string

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shared.fields import EMAIL_MAX
from shared.rules import _normalized_email


def reference(value: str) -> tuple[str | None, str | None]:
    """email-validator's answer for the whole address: (stored form, None) or (None, its message)."""
    try:
        return validate_email(value, check_deliverability=False).normalized.lower(), None
    except EmailNotValidError as error:
        return None, str(error)


def ours(value: str) -> tuple[str | None, str | None]:
    normalized, problem = _normalized_email(value)
    return (None, problem) if problem else (normalized.lower(), None)


LABEL63 = "a" * 63
TRICKY = [
    "ann@example.com", "Ann.Lee@Example.COM", "o'neil@x.com", "a_b-c@x-y.io", "ann+crm@sub.example.co.uk",
    "!#$%&'*+/=?^_`{|}~-@example.com",  # every special character a dot-atom allows
    '"ann lee"@example.com', '"ann"@example.com', '"a\\"b"@example.com', '""@example.com',  # quoted local parts
    ".ann@example.com", "ann.@example.com", "ann..lee@example.com", ".@example.com", "a@.example.com",
    "a@example.com.", "a@example..com", "a@-example.com", "a@example-.com", "a@exa_mple.com",
    "a" * 64 + "@example.com", "a" * 65 + "@example.com",  # the local part's 64
    f"a@{LABEL63}.com", f"a@{LABEL63}a.com",  # a label's 63
    "a@" + ".".join([LABEL63] * 3) + "." + "b" * 56 + ".com",  # 252 characters of domain: 254 in all
    "abcdefghij@" + ".".join([LABEL63] * 3) + "." + "b" * 47 + ".com",  # (a longer address is refused before)
    "a@" + ".".join([LABEL63] * 3) + "." + "b" * 60,
    "x@" + "a." * 120 + "com",
    "a@localhost", "a@localhost.", "a@x.local", "a@x.test", "a@test", "a@x.invalid", "a@x.example", "a@example",
    "a@x.onion", "a@x.arpa", "a@home.arpa", "a@x.internal", "a@x.localdomain", "a@x.lan",
    "a@[192.168.0.1]", "a@[IPv6:::1]", "a@192.168.0.1", "a@1.2.3.4.com", "a@123.com", "a@x.123",
    "a@xn--bcher-kva.de", "a@XN--BCHER-KVA.DE", "a@xn--bcher-kva.xn--p1ai", "a@xn--.com", "a@xn--zz.com",
    "jörg@bücher.de", "a@bücher.de", "ü@x.com", "a@ｅxample.com", "a@example.ｃom", "ａ@example.com",
    "a@b", "a@b.c", "a@b.co", "@example.com", "a@", "a", "a@@b.com", "a@b@c.com", "a b@x.com", "a@x .com",
    "a\t@x.com", "a@x.com\n", "a\x00@x.com", "(comment)a@x.com", "a@x.com(comment)", "<a@x.com>",
    "a@x,com", "a,b@x.com", "a;b@x.com", "a:b@x.com", "a[b]@x.com", "a\\b@x.com",
    "A@EXAMPLE.COM", "a@Example.Com", "a@EXAMPLE.com",
]


@pytest.mark.parametrize("value", TRICKY)
def test_the_tricky_addresses_get_email_validators_answer(value: str):
    assert len(value) <= EMAIL_MAX  # the rule refuses a longer one before (test_rules.py)
    assert ours(value) == reference(value)


_ATEXT = string.ascii_letters + string.digits + "!#$%&'*+/=?^_`{|}~-"
_ODD = ' ."(),:;<>@[\\]\t\x00éüßｅ'
local_parts = st.one_of(
    st.text(alphabet=_ATEXT + ".", min_size=0, max_size=70),
    st.text(alphabet=_ATEXT + _ODD, min_size=0, max_size=70),
    st.builds(lambda s: f'"{s}"', st.text(alphabet=_ATEXT + ' ."\\', max_size=20)),
)
labels = st.one_of(
    st.text(alphabet=string.ascii_letters + string.digits + "-", min_size=0, max_size=65),
    st.text(alphabet=string.ascii_lowercase + "-_", min_size=1, max_size=8),
    st.sampled_from(["xn--bcher-kva", "xn--p1ai", "xn--", "xn--zz", "bücher", "ｅxample", "localhost", "123", "0"]),
)
tlds = st.sampled_from(["com", "org", "io", "de", "local", "test", "invalid", "example", "localhost", "onion", "arpa",
                        "internal", "123", "c", "", "COM", "xn--p1ai"])
domains = st.one_of(
    st.builds(lambda ls, tld: ".".join([*ls, tld]), st.lists(labels, min_size=0, max_size=5), tlds),
    st.sampled_from(["[127.0.0.1]", "[IPv6:::1]", "localhost", "example.com.", ".example.com", "a..b.com"]),
    st.builds(lambda n, tld: ".".join([LABEL63] * n + [tld]), st.integers(1, 4), tlds),
)
addresses = st.builds(lambda local, at, domain: f"{local}{at}{domain}", local_parts, st.sampled_from(["@", "@", "@", "", "@@"]),
                      domains).filter(lambda a: 0 < len(a) <= EMAIL_MAX)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(addresses)
@example("a@" + ".".join([LABEL63] * 3) + "." + "b" * 56 + ".com")
def test_every_generated_address_gets_email_validators_answer(value: str):
    assert ours(value) == reference(value)
