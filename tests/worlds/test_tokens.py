"""verify_token / generate_token: what the WebSocket consumer and the API rely on."""

import base64
import json
import time

import jwt
import pytest
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from apps.accounts.models import User
from apps.core.validation import text_problem
from apps.worlds import services
from apps.worlds.models import World
from apps.worlds.services import TokenError
from tests.fuzzing import (
    HOSTILE_NUMBERS,
    any_char,
    any_text,
    fuzz,
    json_values,
    scalars,
)

SECRET2 = "second-secret-for-rotation-0123456789abcd"


def sign(claims: dict, secret: str, **kw) -> str:
    return jwt.encode(claims, secret, algorithm=kw.pop("algorithm", "HS256"), **kw)


def claims_for(entry: dict, **over) -> dict:
    now = int(time.time())
    claims = {
        "iss": entry["issuer"],
        "aud": entry["audience"],
        "iat": now,
        "exp": now + 3600,
        "uid": "u-1",
        "traits": ["ticket"],
    }
    claims.update(over)
    return claims


def code_of(world, token) -> str:
    with pytest.raises(TokenError) as info:
        services.verify_token(world, token)
    assert str(info.value) == info.value.message
    return info.value.code


def test_generated_token_decodes_with_the_first_secret(world):
    token = services.generate_token(world, ["moderator", "speaker"], days=3)
    entry = world.config["JWT_secrets"][0]
    claims = jwt.decode(
        token,
        entry["secret"],
        algorithms=["HS256"],
        audience="stagehand",
        issuer="any",
    )
    assert claims["traits"] == ["moderator", "speaker"]
    assert claims["exp"] - claims["iat"] == 3 * 86400
    assert len(claims["uid"]) == 36
    assert services.verify_token(world, token)["uid"] == claims["uid"]


def test_generate_token_keeps_a_given_uid_and_defaults_to_90_days(world):
    token = services.generate_token(world, [], uid="fixed-uid")
    claims = services.verify_token(world, token)
    assert claims["uid"] == "fixed-uid"
    assert claims["exp"] - claims["iat"] == 90 * 86400
    assert claims["traits"] == []


def test_every_jwt_secret_is_tried(harbor):
    second = harbor.config["JWT_secrets"][1]
    assert second["secret"] == SECRET2
    claims = services.verify_token(harbor, sign(claims_for(second), SECRET2))
    assert claims["traits"] == ["ticket"]


def test_missing_token(world):
    assert code_of(world, None) == "auth.missing_token"
    assert code_of(world, "") == "auth.missing_token"


def test_garbage_and_tampered_tokens_are_invalid(world):
    assert code_of(world, "not-a-jwt") == "auth.invalid_token"
    token = services.generate_token(world, ["attendee"])
    header, payload, signature = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data["traits"] = ["admin"]
    forged = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    assert code_of(world, f"{header}.{forged}.{signature}") == "auth.invalid_token"


def test_expired_token(world):
    entry = world.config["JWT_secrets"][0]
    past = int(time.time()) - 10
    token = sign(claims_for(entry, iat=past - 100, exp=past), entry["secret"])
    assert code_of(world, token) == "auth.expired_token"


def test_expired_token_with_a_wrong_secret_is_invalid_not_expired(world):
    entry = world.config["JWT_secrets"][0]
    past = int(time.time()) - 10
    token = sign(claims_for(entry, exp=past), "x" * 64)
    assert code_of(world, token) == "auth.invalid_token"


def test_exp_is_required(world):
    entry = world.config["JWT_secrets"][0]
    claims = claims_for(entry)
    del claims["exp"]
    assert code_of(world, sign(claims, entry["secret"])) == "auth.invalid_token"


def test_wrong_audience_and_wrong_issuer(world):
    entry = world.config["JWT_secrets"][0]
    bad_aud = sign(claims_for(entry, aud="elsewhere"), entry["secret"])
    bad_iss = sign(claims_for(entry, iss="someone"), entry["secret"])
    assert code_of(world, bad_aud) == "auth.invalid_token"
    assert code_of(world, bad_iss) == "auth.invalid_token"


def test_alg_none_is_rejected(world):
    entry = world.config["JWT_secrets"][0]
    token = jwt.encode(claims_for(entry), None, algorithm="none")
    assert token.endswith(".")
    assert code_of(world, token) == "auth.invalid_token"


def test_other_algorithms_are_rejected_even_with_the_right_secret(world):
    entry = world.config["JWT_secrets"][0]
    token = sign(claims_for(entry), entry["secret"], algorithm="HS512")
    assert code_of(world, token) == "auth.invalid_token"


def test_a_token_of_another_world_is_rejected(world):
    other = services.create_world("other", "Other", "other.example.org")
    token = services.generate_token(other, ["admin"])
    assert services.verify_token(other, token)
    assert code_of(world, token) == "auth.invalid_token"


def test_token_without_uid_or_with_bad_traits_is_invalid(world):
    entry = world.config["JWT_secrets"][0]
    no_uid = claims_for(entry)
    del no_uid["uid"]
    assert code_of(world, sign(no_uid, entry["secret"])) == "auth.invalid_token"
    bad = sign(claims_for(entry, traits="admin"), entry["secret"])
    assert code_of(world, bad) == "auth.invalid_token"


def test_generate_token_needs_a_secret(world):
    world.config = {}
    with pytest.raises(services.WorldError, match="no JWT secret"):
        services.generate_token(world, [])


def test_get_or_create_attendee_follows_the_token(world):
    token = services.generate_token(world, ["ticket"], uid="bob")
    bob = services.get_or_create_attendee(world, services.verify_token(world, token))
    assert (bob.world, bob.token_id, bob.traits) == (world, "bob", ["ticket"])
    assert not bob.has_usable_password()
    token = services.generate_token(world, ["ticket", "moderator"], uid="bob")
    again = services.get_or_create_attendee(world, services.verify_token(world, token))
    assert again.pk == bob.pk
    again.refresh_from_db()
    assert again.traits == ["ticket", "moderator"]
    other = services.create_world("other", "Other", "other.example.org")
    assert services.get_or_create_attendee(other, {"uid": "bob"}).pk != bob.pk


def test_a_removed_or_deactivated_attendee_is_refused(world):
    bob = services.get_or_create_attendee(world, {"uid": "bob", "traits": []})
    bob.is_active = False
    bob.save()
    with pytest.raises(TokenError) as info:
        services.get_or_create_attendee(world, {"uid": "bob", "traits": []})
    assert info.value.code == "auth.invalid_token"
    bob.is_active, bob.deleted_at = True, timezone.now()
    bob.save()
    with pytest.raises(TokenError):
        services.get_or_create_attendee(world, {"uid": "bob", "traits": ["x"]})
    bob.refresh_from_db()
    assert bob.traits == []
    assert world.attendees.count() == 1


# Hostile claims: refused as auth.invalid_token, never an exception ------------------


def test_the_claim_limits_follow_the_attendee_model():
    assert services.UID_MAX_LENGTH == User._meta.get_field("token_id").max_length


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"exp": float("inf")}, "exp claim must be whole seconds"),
        ({"exp": float("nan")}, "exp claim must be whole seconds"),
        ({"exp": time.time() + 3600.5}, "exp claim must be whole seconds"),
        ({"exp": 2**63}, "exp claim must be whole seconds"),
        ({"exp": True}, "exp claim must be whole seconds"),
        ({"exp": "4102444800"}, "exp claim must be whole seconds"),
        ({"exp": 253402300800}, "exp claim must be whole seconds"),
        ({"nbf": float("-inf")}, "."),  # PyJWT refuses this one itself
        ({"nbf": -1}, "nbf claim must be whole seconds"),
        ({"iat": float("nan")}, "."),  # PyJWT too
        ({"iat": 2**63}, "."),  # and this
        ({"uid": "u" * 201}, "uid is longer than 200 characters"),
        ({"uid": "nul\x00uid"}, "uid contains a NUL character"),
        ({"uid": "\ud800"}, "uid contains a lone surrogate"),
        ({"uid": 42}, "no uid claim"),
        ({"traits": ["ok", "t\x00"]}, "contains a NUL character"),
        ({"traits": ["\udfff"]}, "contains a lone surrogate"),
        ({"traits": ["t" * 201]}, "trait longer than 200 characters"),
        ({"traits": [str(i) for i in range(201)]}, "more than 200 traits"),
    ],
)
def test_claims_outside_the_rules_are_invalid(world, over, message):
    entry = world.config["JWT_secrets"][0]
    # PyJWT writes Infinity and NaN, and escapes lone surrogates, as json.dumps does.
    token = sign(claims_for(entry, **over), entry["secret"])
    with pytest.raises(TokenError, match=message) as info:
        services.verify_token(world, token)
    assert info.value.code == "auth.invalid_token"


def test_a_claim_at_the_limits_logs_in(world):
    entry = world.config["JWT_secrets"][0]
    claims = claims_for(
        entry,
        uid="u" * 200,
        traits=["t" * 200] * 10,
        exp=services.MAX_TIMESTAMP,
        nbf=0,
    )
    verified = services.verify_token(world, sign(claims, entry["secret"]))
    user = services.get_or_create_attendee(world, verified)
    assert user.token_id == "u" * 200


@pytest.mark.parametrize(
    "token",
    [
        "\ud800",
        "eyJ\ud83d.eyJ.x",
        "a.b.c\x00",
        "a\x00.b.c",
        "é.é.é",
        "a.b",
        "a.b.c.d",
        "x" * 16385,
        # Header or claims nested deeper than any token needs.
        ".".join(
            base64.urlsafe_b64encode(part).rstrip(b"=").decode()
            for part in (b'{"alg": "HS256"}', b"[" * 3000, b"sig")
        ),
    ],
)
def test_malformed_tokens_are_invalid_before_decoding(world, token):
    assert code_of(world, token) == "auth.invalid_token"


def test_a_signed_token_with_deep_claims_is_invalid(world):
    # Refused before PyJWT decodes it, whose json.loads would recurse 5,000 deep.
    entry = world.config["JWT_secrets"][0]
    payload = json.dumps(claims_for(entry))[:-1] + ', "x": ' + "[" * 5000 + "]" * 5000
    token = jwt.api_jws.encode((payload + "}").encode(), entry["secret"])
    assert len(token) < services.TOKEN_MAX_LENGTH
    assert code_of(world, token) == "auth.invalid_token"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"days": 3_000_000}, "valid for 1 to 3650 days"),
        ({"days": 10**9}, "valid for 1 to 3650 days"),
        ({"days": 0}, "valid for 1 to 3650 days"),
        ({"days": 2.5}, "valid for 1 to 3650 days"),
        ({"uid": "u" * 201}, "uid is longer than 200 characters. No token was issued."),
        ({"uid": "a\x00b"}, "uid contains a NUL character"),
        ({"traits": ["\ud800"]}, "contains a lone surrogate"),
        ({"traits": [f"{i:0200}" for i in range(80)]}, "more than the 16384 a login"),
    ],
)
def test_generate_token_never_issues_a_token_that_cannot_log_in(world, kwargs, message):
    kwargs = {"traits": [], **kwargs}
    with pytest.raises(services.WorldError, match=message):
        services.generate_token(world, **kwargs)


def test_generate_token_issues_what_verify_token_accepts_at_the_limits(world):
    token = services.generate_token(
        world,
        [f"{i:0200}" for i in range(30)],
        days=services.TOKEN_MAX_DAYS,
        uid="u" * 200,
    )
    claims = services.verify_token(world, token)
    assert len(claims["traits"]) == 30
    assert claims["exp"] - claims["iat"] == 3650 * 86400


# Properties: whatever the token, a documented TokenError or claims that log in -------

TOKEN_CODES = {"auth.missing_token", "auth.invalid_token", "auth.expired_token"}
FUZZ_WORLD = World(id="fuzz", config={"JWT_secrets": services.default_jwt_secrets()})
ENTRY = FUZZ_WORLD.config["JWT_secrets"][0]


def verified_or_refused(token):
    try:
        claims = services.verify_token(FUZZ_WORLD, token)
    except TokenError as exc:
        assert exc.code in TOKEN_CODES
        assert isinstance(exc.message, str) and exc.message
        return exc.code
    # Stated again here, not through claims_problem: what the attendee model and
    # the database take.
    assert isinstance(claims["uid"], str) and 1 <= len(claims["uid"]) <= 200
    assert text_problem(claims["uid"]) is None
    assert isinstance(claims["traits"], list) and len(claims["traits"]) <= 200
    for trait in claims["traits"]:
        assert isinstance(trait, str) and len(trait) <= 200
        assert text_problem(trait) is None
    for name in ("exp", "nbf", "iat"):
        value = claims.get(name, 0)
        assert type(value) is int and 0 <= value <= 253402300799
    assert claims["exp"] > time.time()
    return claims


@fuzz
@given(st.one_of(any_text, st.text(any_char, max_size=400), scalars, json_values))
def test_fuzz_any_token(token):
    verified_or_refused(token)


@fuzz
@given(
    st.text(st.sampled_from("ABCDEFabcdef0123456789-_.=+/\x00\ud800é"), max_size=200)
)
def test_fuzz_token_shaped_text(token):
    assert verified_or_refused(token) in TOKEN_CODES


timestamps = st.one_of(
    scalars, st.integers(int(time.time()) - 10, int(time.time()) + 10**6)
)


hostile_claims = {
    "exp": timestamps,
    "nbf": timestamps,
    "iat": timestamps,
    "uid": st.one_of(any_text, scalars),
    "traits": st.one_of(st.lists(any_text, max_size=5), json_values),
    "iss": any_text,
    "aud": st.one_of(any_text, json_values),
    "extra": json_values,
}


@fuzz
@given(
    st.lists(
        st.one_of(*(st.tuples(st.just(k), v) for k, v in hostile_claims.items())),
        min_size=1,
        max_size=2,
    ),
    st.sets(st.sampled_from(sorted(hostile_claims)), max_size=1),
)
def test_fuzz_signed_claims(changed, removed):
    # A good token of the world's own, signed with its secret, with one or two
    # claims changed and perhaps one removed: only the claim rules stand in the way.
    claims = claims_for(ENTRY, **dict(changed))
    for name in removed:
        claims.pop(name, None)
    verified_or_refused(sign(claims, ENTRY["secret"]))


@fuzz
@given(st.binary(max_size=300))
def test_fuzz_signed_payload_that_is_not_json(payload):
    verified_or_refused(jwt.api_jws.encode(payload, ENTRY["secret"]))


@fuzz
@given(
    st.lists(any_text, max_size=5),
    st.one_of(st.integers(-10, 5000), st.sampled_from(HOSTILE_NUMBERS)),
    st.one_of(st.none(), any_text),
)
def test_fuzz_generate_token_issues_only_tokens_that_log_in(world, traits, days, uid):
    try:
        token = services.generate_token(world, traits, days=days, uid=uid)
    except services.WorldError as exc:
        assert str(exc)
        return
    claims = services.verify_token(world, token)
    user = services.get_or_create_attendee(world, claims)
    assert user.token_id == claims["uid"]
