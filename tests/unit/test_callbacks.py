"""The callback URL rule (shared/callbacks.py), as an attacker would try it: every notation of a local
address, credentials, plain http, local names; the operator's allow-list; and arbitrary text."""

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.callbacks import (
    MAX_URL_CHARS,
    CallbackPolicy,
    CallbackRefused,
    check_form,
    check_url,
    is_public,
    parse_destinations,
)
from shared.events import ImportRequest
from shared.settings import Settings

STRICT = CallbackPolicy()

# One address each of loopback, private, link-local (the cloud metadata service), shared, unspecified,
# broadcast, multicast, reserved and documentation ranges, written every way a resolver reads them.
LOCAL_TARGETS = [
    # empty labels and backslashes, read by some resolvers as the address before them
    "https://127.0.0.1../", "https://foo.local../", "https://127.0.0.1\\.evil.com/", "https://.localhost/",
    "https://169.254.169.254/latest/meta-data/",
    "https://10.0.0.1/",
    "https://172.16.5.4/",
    "https://192.168.1.1/",
    "https://127.0.0.1/",
    "https://127.0.0.1:8443/hook",
    "https://2130706433/",  # 127.0.0.1 as one decimal number
    "https://0x7f.1/",  # hex and a short form
    "https://0x7f000001/",
    "https://127.1/",
    "https://017700000001/",  # octal
    "https://0251.0376.0251.0376/",  # 169.254.169.254 in octal
    "https://0xa9.0xfe.0xa9.0xfe/",
    "https://0/",
    "https://0.0.0.0/",
    "https://100.64.0.1/",
    "https://255.255.255.255/",
    "https://224.0.0.1/",
    "https://240.0.0.1/",
    "https://192.0.2.10/",
    "https://198.18.0.1/",
    "https://[::1]/",
    "https://[::1]:8080/hook",
    "https://[0:0:0:0:0:0:0:1]/",
    "https://[::]/",
    "https://[::ffff:127.0.0.1]/",  # IPv4-mapped
    "https://[::ffff:7f00:1]/",
    "https://[::ffff:169.254.169.254]/",
    "https://[::ffff:a9fe:a9fe]/",
    "https://[64:ff9b::a9fe:a9fe]/",  # NAT64 of 169.254.169.254
    "https://[2002:a9fe:a9fe::1]/",  # 6to4 of 169.254.169.254
    "https://[2002:7f00:1::]/",
    "https://[fe80::1]/",
    "https://[fe80::1%25eth0]/",
    "https://[fc00::1]/",
    "https://[fd12:3456::1]/",
    "https://[fec0::1]/",
    "https://[ff02::1]/",
    "https://[2001:db8::1]/",
    "https://[::127.0.0.1]/",  # IPv4-compatible (deprecated)
    "https://localhost/",
    "https://LocalHost./",
    "https://localhost:9000/hook",
    "https://api.localhost/",
    "https://localhost.localdomain/",
    "https://ip6-localhost/",
    "https://metadata/",  # one label: the resolver's search domains complete it
    "https://metadata.google.internal/computeMetadata/v1/",
    "https://printer.local/",
    "https://router.home.arpa/",
]
NOT_ADDRESSES = ["https://1.2.3.999999/", "https://0x/", "https://foo.123/", "https://0177.0.0.1/", "https://1.2.3.4.5/"]
CREDENTIALS = [
    "https://user:pass@partner.example.com/hook",
    "https://user@partner.example.com/hook",
    "https://:@partner.example.com/hook",
    "https://@partner.example.com/hook",
    "https://a\\@partner.example.com/",  # other parsers read `a` as the host here; httpx reads credentials
    "https://partner.example.com@169.254.169.254/",
]
PUBLIC = [
    "https://partner.example.com/hooks/import",
    "https://partner.example.com:8443/hooks/import?x=1&y=%20",
    "https://HOOKS.Partner.Example.com./import",
    "https://xn--bcher-kva.example/hook",
    "https://93.184.216.34/hook",
    "https://8.8.8.8:443/",
    "https://[2606:4700:4700::1111]/hook",
]


@pytest.mark.parametrize("url", LOCAL_TARGETS)
def test_a_local_private_or_reserved_target_is_refused_in_every_notation(url):
    with pytest.raises(CallbackRefused, match="public host|not a valid URL|not a plain host name"):
        check_url(url, STRICT)
    with pytest.raises(CallbackRefused, match="public host|not a valid URL|not a plain host name"):  # plain http allowed changes nothing
        check_url(url.replace("https://", "http://", 1), CallbackPolicy(allow_http=True))


@pytest.mark.parametrize("url", NOT_ADDRESSES)
def test_a_host_written_like_an_address_that_is_none_is_refused(url):
    with pytest.raises(CallbackRefused, match="not a valid"):
        check_url(url, STRICT)


@pytest.mark.parametrize("url", CREDENTIALS)
def test_credentials_in_the_url_are_refused_everywhere(url):
    with pytest.raises(CallbackRefused, match="credentials"):
        check_form(url)
    with pytest.raises(CallbackRefused, match="credentials"):
        check_url(url, CallbackPolicy(allow_http=True, allowed=frozenset({"partner.example.com"})))
    with pytest.raises(ValidationError, match="credentials"):
        ImportRequest(file_name="f.csv", content="x", options={"callback_url": url})


@pytest.mark.parametrize("url", PUBLIC)
def test_a_public_https_url_is_accepted(url):
    destination = check_url(url, STRICT)
    assert not destination.allowed and destination.host == destination.host.lower() and not destination.host.endswith(".")


def test_plain_http_only_where_the_operator_allows_it():
    with pytest.raises(CallbackRefused, match="https"):
        check_url("http://partner.example.com/hook", STRICT)
    assert check_url("http://partner.example.com/hook", CallbackPolicy(allow_http=True)).port == 80
    for url in ("ftp://partner.example.com/", "file:///etc/passwd", "gopher://partner.example.com/", "javascript:alert(1)",
                "//partner.example.com/", "https:///path", "https://:443/", "partner.example.com"):
        with pytest.raises(CallbackRefused):
            check_url(url, CallbackPolicy(allow_http=True))


def test_the_allow_list_lets_a_named_destination_through_and_only_that_one():
    policy = CallbackPolicy(allow_http=True, allowed=frozenset(parse_destinations("127.0.0.1, hooks.lan:9000, [::1]:8080")))
    assert check_url("http://127.0.0.1:5555/hook", policy).allowed  # a host alone: any port
    assert check_url("http://hooks.lan:9000/x", policy).allowed
    assert check_url("http://[::1]:8080/x", policy).allowed
    for url in ("http://[::1]:8081/", "http://2130706433:5555/", "http://127.0.0.2/", "http://localhost:5555/"):
        with pytest.raises(CallbackRefused, match="public host"):
            check_url(url, policy)
    for url in ("http://hooks.lan:9001/x", "http://hooks.lan/x"):  # names: their addresses are checked at delivery
        assert not check_url(url, policy).allowed
    with pytest.raises(CallbackRefused, match="https"):  # allowed, but plain http is not
        check_url("http://127.0.0.1:5555/hook", CallbackPolicy(allowed=policy.allowed))


def test_the_allow_list_setting_refuses_what_it_cannot_read():
    assert parse_destinations(" Hooks.Example.com ,10.1.2.3:8443,[FE80::1]:99,,") == (
        "hooks.example.com", "10.1.2.3:8443", "[fe80::1]:99")
    for bad in ("http://hooks.example.com", "hooks.example.com/path", "user@hooks.example.com", "host:99999", "a b",
                "hooks.example.com?x", ":80"):
        with pytest.raises(ValueError):
            parse_destinations(bad)
    with pytest.raises(ValidationError, match="WEBHOOK_ALLOWED_DESTINATIONS"):
        Settings(_env_file=None, webhook_allowed_destinations="https://hooks.example.com/")
    policy = CallbackPolicy.of(Settings(_env_file=None, webhook_allow_http=True, webhook_allowed_destinations="127.0.0.1:80"))
    assert policy == CallbackPolicy(True, frozenset({"127.0.0.1:80"}))


def test_a_url_longer_than_the_bound_is_refused():
    url = "https://partner.example.com/" + "x" * (MAX_URL_CHARS - len("https://partner.example.com/"))
    assert check_url(url, STRICT)
    with pytest.raises(CallbackRefused, match=str(MAX_URL_CHARS)):
        check_url(url + "x", STRICT)


@pytest.mark.parametrize("address, public", [
    ("93.184.216.34", True), ("2606:4700:4700::1111", True), ("8.8.8.8", True),
    ("127.0.0.1", False), ("10.1.1.1", False), ("172.31.255.255", False), ("192.168.0.1", False),
    ("169.254.169.254", False), ("100.64.0.1", False), ("0.0.0.0", False), ("224.0.0.251", False),
    ("239.255.255.250", False), ("240.0.0.1", False), ("255.255.255.255", False), ("192.0.0.1", False),
    ("::1", False), ("::", False), ("fe80::1", False), ("fc00::1", False), ("ff02::1", False), ("ff0e::1", False),
    ("fec0::1", False), ("2001:db8::1", False), ("::ffff:127.0.0.1", False), ("::ffff:8.8.8.8", True),
    ("64:ff9b::7f00:1", False), ("64:ff9b::808:808", True), ("64:ff9b:1::a9fe:a9fe", False),
    ("2002:0a00:0001::", False), ("2002:0808:0808::", True), ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),
])
def test_is_public(address, public):
    assert is_public(ipaddress.ip_address(address)) is public


@settings(max_examples=2000, deadline=None)
@given(url=st.one_of(
    st.text(max_size=300),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7f), max_size=120).map(lambda s: "https://" + s),
    st.builds(
        lambda scheme, user, host, port, path: f"{scheme}://{user}{host}{port}{path}",
        st.sampled_from(["http", "https", "HTTPS", "ftp", ""]),
        st.sampled_from(["", "u:p@", "@", ":@", "a%40b@"]),
        st.one_of(st.from_regex(r"[0-9a-fA-Fx.:\[\]%]{0,40}", fullmatch=True),
                  st.from_regex(r"[a-z0-9.-]{0,40}", fullmatch=True),
                  st.ip_addresses().map(lambda a: f"[{a}]" if a.version == 6 else str(a))),
        st.one_of(st.just(""), st.integers(-5, 70000).map(lambda p: f":{p}"), st.text(max_size=8).map(lambda p: f":{p}")),
        st.sampled_from(["", "/", "/hook?x=1", "#frag", "/\\..%2f"]),
    ),
))
def test_any_text_is_either_a_checked_destination_or_refused_with_a_reason(url):
    for policy in (STRICT, CallbackPolicy(allow_http=True, allowed=frozenset({"127.0.0.1", "[::1]:8080"}))):
        try:
            destination = check_url(url, policy)
        except CallbackRefused as refused:
            assert str(refused).startswith("callback_url")
            continue
        assert destination.url.scheme in ("https", "http") and not destination.url.userinfo and 0 < destination.port < 65536
        if not destination.allowed:  # a literal address that got through is a public one
            try:
                address = ipaddress.ip_address(destination.host)
            except ValueError:
                continue
            assert is_public(address)
    try:
        ImportRequest(file_name="f.csv", content="x", options={"callback_url": url})
    except ValidationError:
        pass
