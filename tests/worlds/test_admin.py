import pytest

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
    html = response.content.decode()
    assert "lowercase letters and digits only" in html
    assert "A domain is a host name only" in html
    assert not World.objects.exists()
