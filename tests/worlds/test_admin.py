import json
from io import StringIO

import pytest
from django.core.management import call_command

from apps.worlds import services
from apps.worlds.models import World


@pytest.fixture
def admin_client(client, alice):
    client.force_login(alice)
    return client


def test_world_list_masks_secrets(admin_client, world, harbor):
    response = admin_client.get("/admin/worlds/world/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "any → stagehand (secret hidden)" in html
    for w in (world, harbor):
        for entry in w.config["JWT_secrets"]:
            assert entry["secret"] not in html


def test_pages_load(admin_client, harbor):
    room = harbor.rooms.first()
    for url in (
        "/admin/worlds/world/harborconf/change/",
        "/admin/worlds/room/",
        f"/admin/worlds/room/{room.pk}/change/",
    ):
        assert admin_client.get(url).status_code == 200, url


def test_soft_delete_action_and_no_bulk_delete(admin_client, world):
    page = admin_client.get("/admin/worlds/world/").content.decode()
    assert "delete_selected" not in page
    response = admin_client.post(
        "/admin/worlds/world/",
        {"action": "soft_delete", "_selected_action": ["sample"]},
        follow=True,
    )
    assert response.status_code == 200
    assert "Soft-deleted 1 world." in response.content.decode()
    assert World.objects.get(pk="sample").deleted_at is not None


def test_the_change_form_validates_id_and_domain(admin_client):
    response = admin_client.post(
        "/admin/worlds/world/add/",
        {
            "id": "Bad-Id",
            "title": "T",
            "domain": "https://x.example.org/",
            "config": "{}",
            "roles": "{}",
            "trait_grants": "{}",
            "extra": "{}",
            "locale": "en",
            "timezone": "UTC",
            "rooms-TOTAL_FORMS": "0",
            "rooms-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 200
    # The problems of import_config's validator, at their JSON paths.
    errors = response.context["adminform"].form.errors
    assert errors["id"][0].startswith(
        "$.world.id: The world ID 'Bad-Id' may only contain lowercase letters and "
        "digits"
    )
    assert errors["domain"][0].startswith(
        "$.world.domain: The domain 'https://x.example.org/' must be a host name only"
    )
    assert not World.objects.exists()


# --------------------------------------------------------------------------- change


def change_data(world: World, **changes) -> dict:
    """The change form of ``world`` as a browser posts it, with ``changes``; the
    config as the form shows it (secrets masked), unless ``config`` is changed."""
    data = {
        "title": world.title,
        "domain": world.domain or "",
        "config": json.dumps(services.mask_secrets(world.config)),
        "roles": json.dumps(world.roles),
        "trait_grants": json.dumps(world.trait_grants),
        "extra": json.dumps(world.extra),
        "locale": world.locale,
        "timezone": world.timezone,
        "rooms-TOTAL_FORMS": "0",
        "rooms-INITIAL_FORMS": "0",
    }
    data.update(changes)
    return data


def change(admin_client, world: World, **changes):
    return admin_client.post(
        f"/admin/worlds/world/{world.pk}/change/", change_data(world, **changes)
    )


def test_the_change_form_never_shows_a_secret(admin_client, world):
    secret = world.config["JWT_secrets"][0]["secret"]
    html = admin_client.get(f"/admin/worlds/world/{world.pk}/change/").content.decode()
    assert secret not in html
    assert "********" in html and "Show JWT secrets" in html


def test_a_masked_secret_is_kept_and_a_new_one_replaces_it(admin_client, world):
    secret = world.config["JWT_secrets"][0]["secret"]
    response = change(admin_client, world, title="Renamed")
    assert response.status_code == 302, response.content.decode()
    world.refresh_from_db()
    assert world.title == "Renamed"
    assert world.config["JWT_secrets"][0]["secret"] == secret

    fresh = "n" * 40
    entry = {**world.config["JWT_secrets"][0], "secret": fresh}
    response = change(admin_client, world, config=json.dumps({"JWT_secrets": [entry]}))
    assert response.status_code == 302
    world.refresh_from_db()
    assert world.config["JWT_secrets"][0]["secret"] == fresh


def test_a_mask_with_no_stored_secret_is_refused(admin_client, world):
    entry = {"issuer": "other", "audience": "stagehand", "secret": "********"}
    response = change(admin_client, world, config=json.dumps({"JWT_secrets": [entry]}))
    assert response.status_code == 200
    html = response.content.decode()
    assert "$.world.JWT_secrets[0].secret: ******** keeps a stored secret" in html
    world.refresh_from_db()
    assert world.config["JWT_secrets"][0]["issuer"] == "any"


def test_what_import_config_refuses_the_form_refuses_by_json_path(admin_client, world):
    before = World.objects.get(pk=world.pk)
    short = {"issuer": "any", "audience": "stagehand", "secret": "abcde"}
    response = change(
        admin_client,
        world,
        config=json.dumps({"JWT_secrets": [short]}),
        roles=json.dumps({"attendee": "not-a-list"}),
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert (
        "$.world.JWT_secrets[0].secret: is 5 characters; an HS256 secret needs at "
        "least 32"
    ) in html
    assert "$.roles.attendee: must be a list of permissions" in html
    # The same problems, at the same paths, as import_config reports them.
    document = services.export_config(before)
    document["world"]["JWT_secrets"] = [short]
    document["roles"] = {"attendee": "not-a-list"}
    with pytest.raises(services.ConfigError) as refused:
        services.import_config(document)
    for path, message in refused.value.problems:
        assert html.count(f"{path}: {message}") == 1, path
    world.refresh_from_db()
    assert world.config == before.config and world.roles == before.roles


def test_a_new_world_is_validated_too(admin_client):
    response = admin_client.post(
        "/admin/worlds/world/add/",
        {
            "id": "fresh",
            "title": "Fresh",
            "domain": "",
            "config": json.dumps({"connection_limit": -1}),
            "roles": "{}",
            "trait_grants": json.dumps({"admin": "admins"}),
            "extra": json.dumps({"polls": [], "nonsense": 1}),
            "locale": "en",
            "timezone": "Mars/Olympus",
            "rooms-TOTAL_FORMS": "0",
            "rooms-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 200
    form = response.context["adminform"].form
    assert form.errors["config"][0].startswith("$.world.connection_limit: ")
    assert form.errors["trait_grants"] == [
        "$.trait_grants.admin: must be a list, not a string"
    ]
    assert form.errors["extra"][0].startswith("$.nonsense: unknown key")
    assert form.errors["timezone"] == [
        "$.world.timezone: 'Mars/Olympus' is not a time zone, such as 'UTC'"
    ]
    assert not World.objects.exists()


# --------------------------------------------------------------------------- secrets


def test_secrets_are_shown_on_demand_and_never_cached(admin_client, world):
    secret = world.config["JWT_secrets"][0]["secret"]
    url = f"/admin/worlds/world/{world.pk}/secrets/"
    assert admin_client.get(url).status_code == 405  # a link never reveals them
    response = admin_client.post(url)
    assert response.status_code == 200
    assert secret in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    history = admin_client.get(f"/admin/worlds/world/{world.pk}/history/")
    assert "Revealed the JWT secrets." in history.content.decode()


def test_secrets_are_for_staff_who_may_change_worlds(client, world, django_user_model):
    clerk = django_user_model.objects.create_user("clerk", password="x", is_staff=True)
    client.force_login(clerk)
    response = client.post(f"/admin/worlds/world/{world.pk}/secrets/")
    assert response.status_code == 403
    assert world.config["JWT_secrets"][0]["secret"] not in response.content.decode()


# --------------------------------------------------------------------------- delete


def test_delete_is_soft_with_the_counts_of_delete_world_dry_run(admin_client, harbor):
    services.get_or_create_attendee(harbor, {"uid": "bob", "traits": []})

    dry_run = StringIO()
    call_command("delete_world", harbor.pk, "--dry-run", stdout=dry_run)
    rooms = harbor.rooms.count()
    page = admin_client.get(f"/admin/worlds/world/{harbor.pk}/delete/").content.decode()
    for text in (f"{rooms} rooms", "1 attendee"):
        assert text in dry_run.getvalue() and text in page
    assert "soft delete" in page

    response = admin_client.post(
        f"/admin/worlds/world/{harbor.pk}/delete/", {"post": "yes"}, follow=True
    )
    assert "Soft-deleted" in response.content.decode()
    assert "deleted successfully" not in response.content.decode()
    harbor.refresh_from_db()
    assert harbor.deleted_at is not None
    assert harbor.rooms.count() == rooms and harbor.attendees.count() == 1


@pytest.mark.parametrize(
    ("field", "text", "says"),
    [
        (
            "config",
            '{"connection_limit": 9223372036854775808}',
            "$.world.connection_limit",
        ),
        ("config", '{"profile_fields": ["\\ud800"]}', "$.world.profile_fields[0]"),
        ("config", '{"x\\u0000": 1}', "$.world"),
        ("roles", "[" * 200 + "]" * 200, "$.roles"),
        ("extra", '{"polls": ' + "[" * 200 + "]" * 200 + "}", "$.polls"),
        ("title", "T\x00itle", "Null characters are not allowed."),
    ],
)
def test_hostile_values_are_problems_on_the_form_never_a_500(
    admin_client, world, field, text, says
):
    before = World.objects.get(pk=world.pk)
    response = change(admin_client, world, **{field: text})
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert any(
        says in message for messages in errors.values() for message in messages
    ), errors
    world.refresh_from_db()
    assert (world.title, world.config, world.roles, world.extra) == (
        before.title,
        before.config,
        before.roles,
        before.extra,
    )
