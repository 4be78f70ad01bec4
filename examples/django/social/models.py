"""The original design's models: a Post (with its live fields) and its Media.

Livekeep owns the recording; this app keeps its own rows, written from Livekeep's webhooks,
so its feed, search and moderation work on its own database. `livekeep_*_id` link a row to
Livekeep's and make every webhook an idempotent upsert.
"""

from django.conf import settings
from django.db import models
from django.utils import timezone


class Post(models.Model):
    """A publication; a live is a Post whose `is_live` is true."""

    LIVE_STATUSES = [("live", "live"), ("ended", "ended"), ("interrupted", "interrupted")]

    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="posts")
    content = models.TextField()
    is_live = models.BooleanField(default=False)
    live_status = models.CharField(max_length=16, choices=LIVE_STATUSES, blank=True)
    live_started_at = models.DateTimeField(null=True, blank=True)
    live_ended_at = models.DateTimeField(null=True, blank=True)
    viewer_count = models.PositiveIntegerField(default=0)
    peak_viewers = models.PositiveIntegerField(default=0)
    chat_message_count = models.PositiveIntegerField(default=0)
    livekeep_post_id = models.PositiveBigIntegerField(unique=True, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return self.content


class Media(models.Model):
    """A file attached to a post; a live's recording has `is_live_recording` and `live_post`."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="media")
    title = models.CharField(max_length=500)
    description = models.TextField(blank=True)
    file_type = models.CharField(max_length=16, default="video")
    file_url = models.URLField(max_length=1000)
    mime_type = models.CharField(max_length=200)
    duration = models.FloatField(help_text="seconds")
    size = models.PositiveBigIntegerField()
    original_sha256 = models.CharField(max_length=64, blank=True)
    poster_url = models.URLField(max_length=1000, blank=True)
    is_live_recording = models.BooleanField(default=False)
    live_post = models.ForeignKey(
        Post, on_delete=models.CASCADE, null=True, blank=True, related_name="media_files"
    )
    livekeep_media_id = models.PositiveBigIntegerField(unique=True, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self):
        return self.title


class WebhookDelivery(models.Model):
    """A Livekeep event already applied: a redelivery with the same `webhook-id` is skipped."""

    webhook_id = models.CharField(max_length=100, unique=True)
    event_type = models.CharField(max_length=64)
    received_at = models.DateTimeField(default=timezone.now)

    def __str__(self):
        return f"{self.event_type} {self.webhook_id}"
