"""Standard Webhooks signing (the specification's own test vector), verification as a receiver does it,
the retry schedule and the verdict on each attempt's outcome."""

from __future__ import annotations

import pytest

from shared.domain.webhooks import DEFAULT_SCHEDULE, Schedule, SecretError, Verdict, headers_for, judge, parse_secret, sign, verify

# From the Standard Webhooks specification's reference libraries.
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID, TS, BODY = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'


def test_signature_matches_the_specification_vector() -> None:
    assert sign(parse_secret(SECRET), MSG_ID, TS, BODY) == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_verify_like_a_receiver() -> None:
    key = parse_secret(SECRET)
    headers = headers_for(key, MSG_ID, TS, BODY)
    assert verify(key, headers, BODY, now=TS + 10)
    assert not verify(key, headers, BODY + b" ", now=TS)  # body changed
    assert not verify(key, headers, BODY, now=TS + 301)  # too old: a replay
    assert not verify(parse_secret("whsec_" + "A" * 32), headers, BODY, now=TS)  # another secret
    rotated = {**headers, "webhook-signature": "v1,bm90IGl0 " + headers["webhook-signature"]}
    assert verify(key, rotated, BODY, now=TS)  # one of several signatures matches


@pytest.mark.parametrize("secret", ["", "whsec_", "whsec_not base64!", "whsec_c2hvcnQ="])
def test_bad_secrets(secret: str) -> None:
    with pytest.raises(SecretError):
        parse_secret(secret)


@pytest.mark.parametrize(
    "status,error,refused,verdict",
    [
        (200, None, False, Verdict.DELIVERED),
        (204, None, False, Verdict.DELIVERED),
        (None, "timeout", False, Verdict.RETRY),
        (500, None, False, Verdict.RETRY),
        (503, None, False, Verdict.RETRY),
        (429, None, False, Verdict.RETRY),
        (301, None, False, Verdict.RETRY),
        (308, None, False, Verdict.RETRY),
        (410, None, False, Verdict.GONE),
        (400, None, False, Verdict.FAILED),
        (404, None, False, Verdict.FAILED),
        (None, "refused by the SSRF guard", True, Verdict.FAILED),
    ],
)
def test_judge(status, error, refused, verdict) -> None:
    assert judge(status, error, refused) is verdict


def test_schedule() -> None:
    s = Schedule()
    assert s.delays == DEFAULT_SCHEDULE and s.max_attempts == 10
    assert s.delay_before(1, rand=lambda: 0.5) == 0
    assert s.delay_before(2, rand=lambda: 0.5) == 5
    assert 4.5 <= s.delay_before(2, rand=lambda: 0.0) <= 5.5 and s.delay_before(2, rand=lambda: 1.0) == pytest.approx(5.5)
    assert s.delay_before(11) is None
    assert sum(DEFAULT_SCHEDULE) <= 3 * 24 * 3600 + 6 * 3600  # about three days in all
    assert Schedule.parse("0, 0.5,1").delays == (0.0, 0.5, 1.0)
    with pytest.raises(ValueError):
        Schedule.parse("1,-2")
