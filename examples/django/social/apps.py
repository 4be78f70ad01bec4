from django.apps import AppConfig


class SocialConfig(AppConfig):
    """The social app: posts, their media, and what Livekeep tells it."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "social"
