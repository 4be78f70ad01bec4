from django.contrib import admin

from .models import Media, Post, WebhookDelivery


@admin.register(Post)
class PostAdmin(admin.ModelAdmin):
    list_display = ("id", "content", "author", "is_live", "live_status", "live_started_at")


@admin.register(Media)
class MediaAdmin(admin.ModelAdmin):
    list_display = ("id", "title", "user", "duration", "size", "live_post")


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ("webhook_id", "event_type", "received_at")
