"""ИНН/СНИЛС checksums and argon2id password hashing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from hypothesis import given
from hypothesis import strategies as st

from collector.accounts.inn import InvalidNumber, check_inn, check_snils, is_valid_inn
from collector.accounts.passwords import FAST_TEST_COST, HashingCost, Passwords, WeakPassword

sys.path.insert(0, str(Path(__file__).parent))
import accounts_testkit as kit


@pytest.mark.parametrize("inn", ["7707083893", "7830002293", "7736207543", "500100732259", " 7707083893 "])
def test_published_inns_are_valid(inn: str) -> None:
    assert check_inn(inn) == inn.strip()


@pytest.mark.parametrize(
    "inn",
    [
        "7707083894",
        "500100732258",
        "500100732269",
        "770708389",
        "77070838930",
        "770708389A",
        "７７０７０８３８９３",
        "",
    ],
)
def test_wrong_control_digits_lengths_and_characters_are_refused(inn: str) -> None:
    with pytest.raises(InvalidNumber):
        check_inn(inn)
    assert not is_valid_inn(inn)


def test_person_flag_restricts_the_length() -> None:
    assert check_inn("500100732259", person=True)
    with pytest.raises(InvalidNumber, match="12 digits"):
        check_inn("7707083893", person=True)
    with pytest.raises(InvalidNumber, match="10 digits"):
        check_inn("500100732259", person=False)


@given(st.integers(min_value=0, max_value=9))
def test_exactly_one_control_digit_is_right_for_a_ten_digit_inn(last: int) -> None:
    assert is_valid_inn(f"770708389{last}") == (last == 3)


def test_generated_inns_pass() -> None:
    for _ in range(50):
        assert is_valid_inn(kit.make_inn())


@pytest.mark.parametrize(
    ("snils", "normalised"),
    [("112-233-445 95", "11223344595"), ("11223344595", "11223344595"), ("001-001-997 00", "00100199700")],
)
def test_valid_snils(snils: str, normalised: str) -> None:
    assert check_snils(snils) == normalised


@pytest.mark.parametrize(
    ("body", "control"),
    [
        ("920000100", "00"),  # 9*9 + 2*8 + 1*3 = 100 → 00
        ("123456789", "64"),  # 165 > 101 → 165 mod 101 = 64
        ("999999999", "01"),  # 405 mod 101 = 1
    ],
)
def test_snils_control_for_sums_of_100_and_above_101(body: str, control: str) -> None:
    assert check_snils(body + control) == body + control
    with pytest.raises(InvalidNumber):
        check_snils(body + ("99" if control != "99" else "98"))


@pytest.mark.parametrize("snils", ["112-233-445 96", "1122334459", "abc", "112-233-445 9x"])
def test_invalid_snils(snils: str) -> None:
    with pytest.raises(InvalidNumber):
        check_snils(snils)


def test_password_hash_is_argon2id_and_verifies() -> None:
    passwords = Passwords(FAST_TEST_COST)
    stored = passwords.hash(kit.PASSWORD)
    assert stored.startswith("$argon2id$") and kit.PASSWORD not in stored
    assert passwords.verify(stored, kit.PASSWORD).ok
    assert not passwords.verify(stored, "wrong password!").ok
    assert not passwords.verify("garbage", kit.PASSWORD).ok
    assert not passwords.verify(None, kit.PASSWORD).ok


def test_changed_parameters_trigger_a_rehash_on_login() -> None:
    old = Passwords(FAST_TEST_COST).hash(kit.PASSWORD)
    stronger = Passwords(HashingCost(time_cost=2, memory_cost_kib=2048, parallelism=1))
    result = stronger.verify(old, kit.PASSWORD)
    assert result.ok and result.new_hash is not None
    assert (
        PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1).check_needs_rehash(result.new_hash)
        is False
    )
    assert stronger.verify(result.new_hash, kit.PASSWORD).new_hash is None


@pytest.mark.parametrize("password", ["short", " " * 12, "x" * 300])
def test_password_policy(password: str) -> None:
    with pytest.raises(WeakPassword):
        Passwords(FAST_TEST_COST).hash(password)
