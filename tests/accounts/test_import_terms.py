from datetime import timedelta

import pytest
from django.core.management import CommandError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from apps.accounts import services
from apps.accounts.models import Terms, TermsAcceptance
from tests.helpers import call, documented, run_json

TOS = """Some preamble without a heading.

# Terms of Service

You agree to behave.
"""


@pytest.fixture
def tos_file(tmp_path):
    path = tmp_path / "tos.md"
    path.write_text(TOS, encoding="utf-8")
    return path


@pytest.mark.django_db
def test_import_terms_takes_the_name_from_the_first_heading(tos_file):
    output = call("import_terms", "tos", "1", str(tos_file))
    terms = Terms.objects.get(slug="tos", version="1")
    assert terms.name == "Terms of Service"
    assert terms.text == TOS
    assert terms.required
    assert terms.active_from <= timezone.now()
    assert 'Imported "Terms of Service" (tos version 1)' in output


@pytest.mark.django_db
def test_import_terms_with_name_and_active_from(tos_file):
    call(
        "import_terms",
        "tos",
        "2",
        str(tos_file),
        "--name",
        "House rules",
        "--active-from",
        "2031-02-03T04:05:00+00:00",
    )
    terms = Terms.objects.get(slug="tos", version="2")
    assert terms.name == "House rules"
    assert terms.active_from.isoformat() == "2031-02-03T04:05:00+00:00"


@pytest.mark.django_db
def test_import_terms_setext_heading_and_plain_date(tmp_path):
    path = tmp_path / "privacy.md"
    path.write_text("Privacy notice\n==============\n\nWe keep little.\n")
    call("import_terms", "privacy", "2026-1", str(path), "--active-from", "2030-01-01")
    terms = Terms.objects.get(slug="privacy")
    assert terms.name == "Privacy notice"
    assert timezone.localtime(terms.active_from).hour == 0


def test_first_heading_ignores_code_fences():
    text = "```\n# not a heading\n```\n\n## Real one ##\n"
    assert services.first_heading(text) == "Real one"
    assert services.first_heading("no heading at all\n") is None


@pytest.mark.django_db
def test_import_terms_error_paths(tmp_path, tos_file):
    with pytest.raises(CommandError, match="no such file"):
        call("import_terms", "tos", "1", str(tmp_path / "missing.md"))
    headless = tmp_path / "headless.md"
    headless.write_text("Just text.\n")
    with pytest.raises(CommandError, match="no Markdown heading.*pass --name"):
        call("import_terms", "tos", "1", str(headless))
    with pytest.raises(CommandError, match="not a date or date-time"):
        call("import_terms", "tos", "1", str(tos_file), "--active-from", "next tuesday")
    with pytest.raises(CommandError, match="not a valid slug"):
        call("import_terms", "terms of service", "1", str(tos_file))
    with pytest.raises(CommandError, match="version must be 1 to 50 characters"):
        call("import_terms", "tos", "v" * 51, str(tos_file))
    binary = tmp_path / "binary.md"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(CommandError, match="cannot be read as UTF-8"):
        call("import_terms", "tos", "1", str(binary))
    assert not Terms.objects.exists()
    call("import_terms", "tos", "1", str(tos_file))
    with pytest.raises(CommandError, match="exist already; import the changed text"):
        call("import_terms", "tos", "1", str(tos_file))


@pytest.mark.django_db
def test_required_terms_follow_the_newest_active_version(bob):
    now = timezone.now()
    v1 = services.import_terms("tos", "1", TOS, active_from=now - timedelta(days=10))
    services.import_terms("tos", "2", TOS, active_from=now + timedelta(days=10))
    services.import_terms("news", "1", "# News\n", required=False)
    assert services.terms_required_for(bob) == [v1]

    services.accept_terms(bob, [v1.pk])
    acceptance = TermsAcceptance.objects.get(user=bob)
    assert acceptance.terms.version == "1"
    assert acceptance.accepted_at <= timezone.now()
    assert services.terms_required_for(bob) == []

    # Once version 2 is active, version 1's acceptance no longer counts.
    later = now + timedelta(days=11)
    assert [t.version for t in services.terms_required_for(bob, now=later)] == ["2"]


@pytest.mark.django_db
def test_accept_terms_refuses_unknown_and_outdated_versions(bob):
    now = timezone.now()
    v1 = services.import_terms("tos", "1", TOS, active_from=now - timedelta(days=2))
    v2 = services.import_terms("tos", "2", TOS, active_from=now - timedelta(days=1))
    with pytest.raises(services.TermsError, match=f"Terms {v1.pk} are not current"):
        services.accept_terms(bob, [v1.pk])
    with pytest.raises(services.TermsError, match="must be integers"):
        services.accept_terms(bob, ["x"])
    with pytest.raises(services.TermsError, match="No terms given"):
        services.accept_terms(bob, [])
    assert not TermsAcceptance.objects.exists()
    services.accept_terms(bob, [v2.pk])
    services.accept_terms(bob, [v2.pk])  # accepting twice records it once
    assert TermsAcceptance.objects.filter(user=bob).count() == 1


@pytest.mark.django_db
def test_import_terms_json_prints_the_terms(tmp_path, monkeypatch):
    (tmp_path / "terms-v3.md").write_text(TOS, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    args = documented("docs/accounts.md", "import_terms tos 3 terms-v3.md --json")
    data, err = run_json(*args)
    assert err == ""
    terms = Terms.objects.get(slug="tos", version="3")
    assert data == {
        "id": terms.pk,
        "slug": "tos",
        "version": "3",
        "name": "Terms of Service",
        "required": True,
        "active_from": data["active_from"],
    }
    assert parse_datetime(data["active_from"]) == terms.active_from
    with pytest.raises(CommandError, match="no such file"):
        run_json("import_terms", "tos", "4", "missing.md", "--json")
