from django.apps import AppConfig


class RoundtableSyncConfig(AppConfig):
    name = "roundtable_sync"
    verbose_name = "Roundtable sync"
