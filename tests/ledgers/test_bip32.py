"""BIP-32 public derivation (ledgers/ethereum/bip32.py) against the BIP's own test vectors 1 and 2
(bitcoin/bips, bip-0032.mediawiki), and against eth_account's mnemonic derivation: a watch-only controller
must see exactly the addresses the mnemonic gives, or tenants' payments go where nobody looks."""

from __future__ import annotations

import pytest

pytest.importorskip("coincurve")

from eth_account.hdaccount import seed_from_mnemonic  # noqa: E402

from ledgers.ethereum.bip32 import HARDENED, XpubError, account_xpub, b58check_decode, parse_xpub  # noqa: E402
from ledgers.ethereum.keys import derive_addresses, derive_addresses_from_xpub  # noqa: E402

H = HARDENED
V1_SEED = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
V2_SEED = bytes.fromhex("fffcf9f6f3f0edeae7e4e1dedbd8d5d2cfccc9c6c3c0bdbab7b4b1aeaba8a5a29f9c999693908d8a8784817e7b7875"
                        "726f6c696663605d5a5754514e4b484542")
V1 = {  # path -> ext pub, test vector 1
    (): "xpub661MyMwAqRbcFtXgS5sYJABqqG9YLmC4Q1Rdap9gSE8NqtwybGhePY2gZ29ESFjqJoCu1Rupje8YtGqsefD265TMg7usUDFdp6W1EGMcet8",
    (H,): "xpub68Gmy5EdvgibQVfPdqkBBCHxA5htiqg55crXYuXoQRKfDBFA1WEjWgP6LHhwBZeNK1VTsfTFUHCdrfp1bgwQ9xv5ski8PX9rL2dZXvgGDnw",
    (H, 1): "xpub6ASuArnXKPbfEwhqN6e3mwBcDTgzisQN1wXN9BJcM47sSikHjJf3UFHKkNAWbWMiGj7Wf5uMash7SyYq527Hqck2AxYysAA7xmALppuCkwQ",
    (H, 1, 2 + H): "xpub6D4BDPcP2GT577Vvch3R8wDkScZWzQzMMUm3PWbmWvVJrZwQY4VUNgqFJPMM3No2dFDFGTsxxpG5uJh7n7epu4trkrX7x7DogT5Uv6fcLW5",
    (H, 1, 2 + H, 2): "xpub6FHa3pjLCk84BayeJxFW2SP4XRrFd1JYnxeLeU8EqN3vDfZmbqBqaGJAyiLjTAwm6ZLRQUMv1ZACTj37sR62cfN7fe5JnJ7dh8zL4fiyLHV",
    (H, 1, 2 + H, 2, 1000000000): "xpub6H1LXWLaKsWFhvm6RVpEL9P4KfRZSW7abD2ttkWP3SSQvnyA8FSVqNTEcYFgJS2UaFcxupHiYkro49S8yGasTvXEYBVPamhGW6cFJodrTHy",
}
V2 = {  # test vector 2
    (): "xpub661MyMwAqRbcFW31YEwpkMuc5THy2PSt5bDMsktWQcFF8syAmRUapSCGu8ED9W6oDMSgv6Zz8idoc4a6mr8BDzTJY47LJhkJ8UB7WEGuduB",
    (0,): "xpub69H7F5d8KSRgmmdJg2KhpAK8SR3DjMwAdkxj3ZuxV27CprR9LgpeyGmXUbC6wb7ERfvrnKZjXoUmmDznezpbZb7ap6r1D3tgFxHmwMkQTPH",
    (0, 2147483647 + H): "xpub6ASAVgeehLbnwdqV6UKMHVzgqAG8Gr6riv3Fxxpj8ksbH9ebxaEyBLZ85ySDhKiLDBrQSARLq1uNRts8RuJiHjaDMBU4Zn9h8LZNnBC5y4a",
    (0, 2147483647 + H, 1): "xpub6DF8uhdarytz3FWdA8TvFSvvAh8dP3283MY7p2V4SeE2wyWmG5mg5EwVvmdMVCQcoNJxGoWaU9DCWh89LojfZ537wTfunKau47EL2dhHKon",
    (0, 2147483647 + H, 1, 2147483646 + H): "xpub6ERApfZwUNrhLCkDtcHTcxd75RbzS1ed54G1LkBUHQVHQKqhMkhgbmJbZRkrgZw4koxb5JaHWkY4ALHY2grBGRjaDMzQLcgJvLJuZZvRcEL",
    (0, 2147483647 + H, 1, 2147483646 + H, 2): "xpub6FnCn6nSzZAw5Tw7cgR9bi15UV96gLZhjDstkXXxvCLsUXBGXPdSnLFbdpq8p9HmGsApME5hQTZ3emM2rnY5agb9rXpVGyy3bdW6EEgAtqt",
}
V1_XPRV_M = ("xprv9s21ZrQH143K3QTDL4LXw2F7HEK3wJUD2nW2nRk4stbPy6cq3jPPqjiChkVvvNKmPGJxWUtg6LnF5kejMRNNU3TGtRBeJgk33yuGB"
             "xrMPHi")
TEST_MNEMONIC = "test test test test test test test test test test test junk"  # Hardhat's public development phrase


@pytest.mark.parametrize("vectors", [V1, V2], ids=["vector1", "vector2"])
def test_every_non_hardened_step_derives_the_vectors_child_from_the_parents_xpub(vectors):
    steps = 0
    for path, text in vectors.items():
        if path and path[-1] < H:
            assert parse_xpub(vectors[path[:-1]]).child(path[-1]).serialize() == text
            steps += 1
    assert steps >= 3


@pytest.mark.parametrize("seed, vectors", [(V1_SEED, V1), (V2_SEED, V2)], ids=["vector1", "vector2"])
def test_private_derivation_from_the_seed_gives_the_vectors_xpubs(seed, vectors):
    for path, text in vectors.items():
        assert account_xpub(seed, path).serialize() == text


def test_a_parsed_xpub_serialises_back_to_the_same_text():
    for text in (*V1.values(), *V2.values()):
        assert parse_xpub(text).serialize() == text


def test_watch_only_addresses_equal_the_mnemonics_for_many_indexes():
    xpub = account_xpub(seed_from_mnemonic(TEST_MNEMONIC, "")).serialize()
    accounts = {f"s{i}": i for i in (*range(60), 1000, 65_535, 2**31 - 1)}
    assert derive_addresses_from_xpub(xpub, accounts) == derive_addresses(TEST_MNEMONIC, accounts)
    # Hardhat's first account is m/44'/60'/0'/0/0 of this phrase: the xpub reaches the well-known address.
    assert derive_addresses_from_xpub(xpub, {"a": 0})["a"] == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


def test_a_mistyped_xpub_fails_its_checksum():
    text = V1[(H,)]
    typo = text[:20] + ("a" if text[20] != "a" else "b") + text[21:]
    with pytest.raises(XpubError, match="checksum"):
        parse_xpub(typo)
    with pytest.raises(XpubError, match="checksum"):
        parse_xpub(text[:-3])


def test_an_xprv_is_refused_as_a_private_key():
    with pytest.raises(XpubError, match="PRIVATE"):
        parse_xpub(V1_XPRV_M)


def test_other_version_bytes_and_characters_are_refused():
    from ledgers.ethereum.bip32 import b58check_encode

    payload = b58check_decode(V1[()])
    with pytest.raises(XpubError, match="version bytes"):
        parse_xpub(b58check_encode(bytes.fromhex("049d7cb2") + payload[4:]))  # a "ypub"
    with pytest.raises(XpubError, match="base58"):
        parse_xpub("xpub0OIl" + V1[()][8:])
    with pytest.raises(XpubError, match="78"):
        parse_xpub(b58check_encode(payload[:-1]))


def test_the_account_node_must_be_at_depth_3():
    with pytest.raises(XpubError, match="depth 0"):
        parse_xpub(V1[()], depth=3)
    with pytest.raises(XpubError, match="depth 4"):
        parse_xpub(V1[(H, 1, 2 + H, 2)], depth=3)
    assert parse_xpub(V1[(H, 1, 2 + H)], depth=3).depth == 3
    with pytest.raises(ValueError, match="account"):
        derive_addresses_from_xpub(V1[()], {"kitchen": 0})


def test_a_hardened_child_cannot_come_from_a_public_key():
    with pytest.raises(ValueError, match="non-hardened"):
        parse_xpub(V1[()]).child(H)
