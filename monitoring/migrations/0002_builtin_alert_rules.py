"""The built-in alert rules of DESIGN.md ("Monitoring"); staff may edit or disable them."""

from django.db import migrations

from monitoring.builtin_rules import BUILTIN_RULES, ensure_builtin_rules



def create_rules(apps, schema_editor):
    ensure_builtin_rules(apps.get_model("monitoring", "AlertRule"))


def remove_rules(apps, schema_editor):
    AlertRule = apps.get_model("monitoring", "AlertRule")
    AlertRule.objects.filter(builtin=True, name__in=[r[0] for r in BUILTIN_RULES]).delete()


class Migration(migrations.Migration):
    dependencies = [("monitoring", "0001_initial")]

    operations = [migrations.RunPython(create_rules, remove_rules)]
