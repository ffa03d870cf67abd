from io import StringIO

import pytest
from django.contrib.auth import authenticate
from django.core.management import CommandError, call_command

from apps.accounts.models import User
from apps.worlds import services as worlds
from tests.helpers import documented, printed, run_json

GOOD = "lantern-orbit-73"


def create(*args, stdin="", **options) -> str:
    return printed("create_user", *args, stdin=stdin, **options).both


@pytest.mark.django_db
def test_create_user_reads_the_password_from_stdin():
    output = create(
        "--email", "Carol@Example.org", "--password-stdin", stdin=StringIO(GOOD + "\n")
    )
    user = User.objects.get(email="Carol@Example.org")
    assert not user.is_staff and not user.is_superuser
    assert authenticate(username="carol@example.org", password=GOOD) == user
    assert "User Carol@Example.org created" in output
    assert GOOD not in output


@pytest.mark.django_db
def test_create_user_admin_gets_staff_and_superuser():
    create(
        "--email",
        "dora@example.org",
        "--admin",
        "--password-stdin",
        stdin=StringIO(GOOD),
    )
    user = User.objects.get(email="dora@example.org")
    assert user.is_staff and user.is_superuser


@pytest.mark.django_db
def test_create_user_prompts_for_email_and_password_without_echo(monkeypatch, terminal):
    asked = []

    def fake_getpass(prompt: str = "Password: ") -> str:
        asked.append(prompt)
        return GOOD

    monkeypatch.setattr("getpass.getpass", fake_getpass)
    output = create(stdin=terminal("erin@example.org\n"))
    assert "Email: " in output
    assert asked == ["Password: ", "Password (again): "]
    assert GOOD not in output
    assert User.objects.get(email="erin@example.org").check_password(GOOD)


@pytest.mark.django_db
def test_create_user_asks_again_after_a_rejected_password(monkeypatch, terminal):
    answers = iter(["123", "123", GOOD, GOOD])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    output = create("--email", "finn@example.org", stdin=terminal(""))
    assert "too short" in output or "entirely numeric" in output
    assert User.objects.get(email="finn@example.org").check_password(GOOD)


@pytest.mark.django_db
def test_create_user_mismatched_passwords_three_times_creates_nothing(
    monkeypatch, terminal
):
    answers = iter(["one-long-pass-1", "other-long-pass-2"] * 3)
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    with pytest.raises(CommandError, match="No acceptable password after 3 tries"):
        create("--email", "gil@example.org", stdin=terminal(""))
    assert not User.objects.filter(email="gil@example.org").exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "password, complaint",
    [
        ("short", "too short"),
        ("password123", "too common"),
        ("83920174659", "entirely numeric"),
        ("hank@example.org", "too similar"),
    ],
)
def test_create_user_applies_the_password_validators(password, complaint):
    with pytest.raises(CommandError, match=complaint):
        create(
            "--email", "hank@example.org", "--password-stdin", stdin=StringIO(password)
        )
    assert not User.objects.filter(email="hank@example.org").exists()


@pytest.mark.django_db
def test_create_user_refuses_an_existing_email_in_any_case(bob):
    with pytest.raises(CommandError, match="already exists; use set_admin"):
        create("--email", "BOB@example.org", "--password-stdin", stdin=StringIO(GOOD))


@pytest.mark.django_db
def test_create_user_refuses_an_invalid_email():
    with pytest.raises(CommandError, match="not a valid email"):
        create("--email", "not-an-email", "--password-stdin", stdin=StringIO(GOOD))


@pytest.mark.django_db
def test_create_user_without_a_terminal_needs_email_and_password_stdin():
    with pytest.raises(CommandError, match="No email given; pass --email"):
        create("--password-stdin", stdin=StringIO(GOOD))
    with pytest.raises(CommandError, match="pipe it in with --password-stdin"):
        create("--email", "ivy@example.org", stdin=StringIO(GOOD))
    with pytest.raises(CommandError, match="carried no password"):
        create("--email", "ivy@example.org", "--password-stdin", stdin=StringIO(""))
    assert not User.objects.filter(email="ivy@example.org").exists()


@pytest.mark.django_db
def test_create_user_in_a_world_makes_an_attendee_with_a_uid():
    world = worlds.create_world("expo", "Expo", "expo.example.org")
    output = create(
        "--email",
        "jo@example.org",
        "--world",
        "expo",
        "--password-stdin",
        stdin=StringIO(GOOD),
    )
    user = User.objects.get(email="jo@example.org")
    assert user.world == world and user.token_id
    assert f"generate_token expo --uid {user.token_id}" in output
    claims = worlds.verify_token(
        world, worlds.generate_token(world, [], uid=user.token_id)
    )
    assert worlds.get_or_create_attendee(world, claims) == user


@pytest.mark.django_db
def test_create_user_unknown_world():
    with pytest.raises(CommandError, match="No world 'nowhere'"):
        create(
            "--email",
            "kim@example.org",
            "--world",
            "nowhere",
            "--password-stdin",
            stdin=StringIO(GOOD),
        )


@pytest.mark.django_db
def test_createsuperuser_works_with_the_custom_user_model(monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", GOOD)
    call_command(
        "createsuperuser",
        "--noinput",
        "--username",
        "root",
        "--email",
        "root@example.org",
        stdout=StringIO(),
    )
    user = User.objects.get(username="root")
    assert user.is_superuser and user.is_staff and user.email == "root@example.org"
    assert authenticate(username="ROOT@example.org", password=GOOD) == user


@pytest.mark.django_db
def test_createsuperuser_refuses_an_email_that_differs_only_in_case(monkeypatch, bob):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", GOOD)
    with pytest.raises(
        CommandError,
        match=r"A user with email BOB@Example.org already exists; use set_admin "
        r"bob@example.org to change their rights \(emails are compared ignoring case",
    ):
        call_command(
            "createsuperuser",
            "--noinput",
            "--username",
            "root",
            "--email",
            "BOB@Example.org",
            stdout=StringIO(),
        )
    assert not User.objects.filter(username="root").exists()


@pytest.mark.django_db
def test_create_user_asks_for_the_email_first_and_again_after_a_bad_one(
    monkeypatch, terminal, bob
):
    asked = []

    def fake_getpass(prompt: str = "Password: ") -> str:
        asked.append((prompt, output_so_far.getvalue()))
        return GOOD

    output_so_far = StringIO()
    monkeypatch.setattr("getpass.getpass", fake_getpass)
    call_command(
        "create_user",
        stdin=terminal("not-an-email\nBob@EXAMPLE.org\nerin@example.org\n"),
        stdout=output_so_far,
        stderr=output_so_far,
    )
    output = output_so_far.getvalue()
    assert output.count("Email: ") == 3
    assert "'not-an-email' is not a valid email address" in output
    assert "A user with email Bob@EXAMPLE.org already exists" in output
    # Every email problem was said before the password was asked for.
    assert [prompt for prompt, _ in asked] == ["Password: ", "Password (again): "]
    assert asked[0][1].count("Email: ") == 3
    assert User.objects.get(email="erin@example.org").check_password(GOOD)


@pytest.mark.django_db
def test_create_user_gives_up_after_three_bad_emails(monkeypatch, terminal, bob):
    def no_password(prompt: str = "") -> str:
        raise AssertionError("the password was asked for before a valid email")

    monkeypatch.setattr("getpass.getpass", no_password)
    with pytest.raises(
        CommandError, match="No acceptable email after 3 tries; nothing was created"
    ):
        create(stdin=terminal("x\nbob@example.org\nBOB@example.org\nok@example.org\n"))
    assert User.objects.count() == 1


@pytest.mark.django_db
def test_a_bad_email_option_is_refused_before_the_password(monkeypatch, terminal, bob):
    def no_password(prompt: str = "") -> str:
        raise AssertionError("the password was asked for before a valid email")

    monkeypatch.setattr("getpass.getpass", no_password)
    # Piped password: nothing to ask again, so an error that names the problem.
    with pytest.raises(CommandError, match="already exists.*Nothing was created"):
        create("--email", "BOB@example.org", "--password-stdin", stdin=StringIO(GOOD))
    # On a terminal the email is asked for again, before any password.
    asked = []
    monkeypatch.setattr(
        "getpass.getpass", lambda prompt="": asked.append(prompt) or GOOD
    )
    output = create("--email", "not-an-email", stdin=terminal("erin@example.org\n"))
    assert "'not-an-email' is not a valid email address" in output
    assert output.count("Email: ") == 1
    assert asked == ["Password: ", "Password (again): "]
    assert User.objects.filter(email="erin@example.org").exists()


@pytest.mark.django_db
def test_json_prints_the_new_user_and_nothing_else():
    args = documented(
        "docs/accounts.md",
        "create_user --email ops@example.org --password-stdin --json",
    )
    data, err = run_json(*args, stdin=GOOD + "\n")
    assert err == ""
    user = User.objects.get(email="ops@example.org")
    assert data == {
        "id": user.pk,
        "email": "ops@example.org",
        "username": user.username,
        "staff": False,
        "superuser": False,
        "world": None,
        "uid": "",
    }
    assert GOOD not in str(data)


@pytest.mark.django_db
def test_json_attendee_has_world_and_uid_and_the_hint_goes_to_stderr():
    worlds.create_world("expo", "Expo", "expo.example.org")
    data, err = run_json(
        "create_user",
        "--email",
        "jo@example.org",
        "--world",
        "expo",
        "--admin",
        "--password-stdin",
        "--json",
        stdin=GOOD,
    )
    user = User.objects.get(email="jo@example.org")
    assert (data["world"], data["uid"]) == ("expo", user.token_id)
    assert data["staff"] and data["superuser"]
    assert f"generate_token expo --uid {user.token_id}" in err


@pytest.mark.django_db
def test_json_asks_on_stderr_at_a_terminal(monkeypatch, terminal):
    monkeypatch.setattr("getpass.getpass", lambda prompt="Password: ": GOOD)
    data, err = run_json(
        "create_user", "--json", stdin=terminal("not-an-email\nfay@example.org\n")
    )
    assert data["email"] == "fay@example.org"
    assert err.count("Email: ") == 2
    assert User.objects.filter(email="fay@example.org").exists()


@pytest.mark.django_db
def test_json_errors_stay_command_errors(bob):
    with pytest.raises(CommandError, match="already exists"):
        run_json(
            "create_user",
            "--email",
            "bob@example.org",
            "--password-stdin",
            "--json",
            stdin=GOOD,
        )
