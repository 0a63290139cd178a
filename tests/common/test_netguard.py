"""common.netguard: which addresses a customer's URL may lead to, in every spelling."""

from __future__ import annotations

import ipaddress

import pytest

from common import netguard

INWARD = [
    "127.0.0.1", "127.1.2.3", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "100.64.0.1",
    "0.0.0.0", "224.0.0.1", "255.255.255.255", "192.0.2.1", "::1", "::", "fe80::1", "fc00::1", "fd12::1",
    "ff02::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "2002:7f00:1::", "2002:a9fe:a9fe::",
    "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "::127.0.0.1", "2001:db8::1",
]  # fmt: skip
PUBLIC = ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8", "2002:808:808::"]


@pytest.mark.parametrize("text", INWARD)
def test_inward_addresses_are_refused(text):
    with pytest.raises(netguard.AddressRefused):
        netguard.check_address(ipaddress.ip_address(text))


@pytest.mark.parametrize("text", PUBLIC)
def test_public_addresses_pass(text):
    netguard.check_address(ipaddress.ip_address(text))


def test_the_operator_may_allow_networks():
    allowed = netguard.networks(["10.20.0.0/16", "127.0.0.1/32"])
    netguard.check_address(ipaddress.ip_address("10.20.3.4"), allowed)
    netguard.check_address(ipaddress.ip_address("127.0.0.1"), allowed)
    netguard.check_address(ipaddress.ip_address("::ffff:127.0.0.1"), allowed)
    with pytest.raises(netguard.AddressRefused):
        netguard.check_address(ipaddress.ip_address("10.21.0.1"), allowed)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/api/v1",
        "http://2130706433/",  # decimal
        "http://0x7f000001/",  # hex
        "http://0x7f.1/",
        "http://127.1/",  # short
        "http://017700000001/",  # octal
        "http://[::ffff:127.0.0.1]/",
        "http://[::1]:8080/",
        "http://169.254.169.254/latest/meta-data/",
        "http://localhost:8080/",
        "http://0/",
    ],
)
async def test_every_spelling_of_an_inward_host_is_refused(url):
    with pytest.raises(netguard.AddressRefused):
        await netguard.check_url_resolves(url)


@pytest.mark.parametrize("url", ["http://user@example.com/", "http://u:p@example.com/", "http://example.com@127.0.0.1/"])
def test_user_info_is_refused(url):
    with pytest.raises(netguard.AddressRefused, match="user name"):
        netguard.check_url(url)


async def test_a_name_that_does_not_resolve_may_be_saved_but_never_connected():
    await netguard.check_url_resolves("https://s3.example.invalid/", unresolvable_ok=True)
    with pytest.raises(netguard.AddressRefused):
        await netguard.check_url_resolves("https://s3.example.invalid/")


async def test_the_resolver_hands_out_only_checked_addresses():
    resolver = netguard.GuardedResolver()
    with pytest.raises(netguard.AddressRefused):
        await resolver.resolve("localhost", 80)
    allowed = netguard.GuardedResolver(netguard.networks(["127.0.0.0/8", "::1/128"]))
    found = await allowed.resolve("localhost", 80)
    assert found and all(ipaddress.ip_address(r["host"]).is_loopback for r in found)
