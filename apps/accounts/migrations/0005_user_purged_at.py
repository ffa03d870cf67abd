"""A purged account says so in ``purged_at``, no longer through its email alone."""

from django.db import migrations, models


def mark_tombstones(apps, schema_editor):
    # Until now a purge was recognised by the email it leaves: "<pk>@deleted".
    User = apps.get_model("accounts", "User")
    tombstones = User.objects.filter(
        deleted_at__isnull=False, email__endswith="@deleted"
    ).only("pk", "email", "deleted_at")
    for user in tombstones.iterator():
        if user.email == f"{user.pk}@deleted":
            User.objects.filter(pk=user.pk).update(purged_at=user.deleted_at)


class Migration(migrations.Migration):
    dependencies = [("accounts", "0004_user_updated_at")]

    operations = [
        migrations.AddField(
            model_name="user",
            name="purged_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(mark_tombstones, migrations.RunPython.noop),
    ]
