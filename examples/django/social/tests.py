"""The example's own checks: tokens Livekeep will accept, webhooks applied once and in order."""

import json
import time
from datetime import datetime, timezone

import jwt
from django.contrib.auth import get_user_model
from django.test import TestCase, override_settings
from standardwebhooks.webhooks import Webhook

from .models import Media, Post

SECRET = "whsec_" + "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0IQ=="


def post_json(author, live_id=7, status="live"):
    return {
        "id": live_id,
        "author": {"id": 1, "username": author.username, "external_id": str(author.pk)},
        "content": "Test caméra",
        "is_live": True,
        "live_status": status,
        "started_at": "2025-07-23T13:30:00Z",
        "ended_at": None if status == "live" else "2025-07-23T13:31:30Z",
        "viewer_count": 3,
        "peak_viewers": 2,
        "chat_message_count": 5,
        "media_files": [],
        "created_at": "2025-07-23T13:30:00Z",
    }


def media_json(author, live_id=7):
    return {
        "id": 11,
        "user": {"id": 1, "username": author.username, "external_id": str(author.pk)},
        "title": "Vidéo du live - Test caméra",
        "description": "Vidéo enregistrée du live 'Test caméra'",
        "file_type": "video",
        "file_url": "http://livekeep.test/media/11",
        "mime_type": "video/webm",
        "duration": 90.0,
        "size": 1234,
        "original_sha256": "0" * 64,
        "is_live_recording": True,
        "live_post": live_id,
        "poster_url": None,
        "created_at": "2025-07-23T13:31:31Z",
    }


@override_settings(
    LIVEKEEP_WEBHOOK_SECRET=SECRET,
    LIVEKEEP_JWT_SECRET="jwt-secret-for-tests-at-least-32-bytes",
    LIVEKEEP_JWT_ISSUER="hostapp",
    LIVEKEEP_JWT_AUDIENCE="livekeep",
)
class LivekeepIntegrationTests(TestCase):
    def setUp(self):
        self.alice = get_user_model().objects.create_user("alice", password="correct horse battery")

    def deliver(self, event_type, data, *, webhook_id="msg_1", secret=SECRET):
        body = json.dumps({"type": event_type, "timestamp": "2025-07-23T13:31:31Z", "data": data})
        now = datetime.now(tz=timezone.utc)
        headers = {
            "HTTP_WEBHOOK_ID": webhook_id,
            "HTTP_WEBHOOK_TIMESTAMP": str(int(now.timestamp())),
            "HTTP_WEBHOOK_SIGNATURE": Webhook(secret).sign(webhook_id, now, body),
        }
        return self.client.post("/livekeep/webhook/", body, content_type="application/json", **headers)

    def test_a_signed_in_user_gets_a_short_lived_token_for_its_own_id(self):
        self.client.login(username="alice", password="correct horse battery")
        answer = self.client.get("/livekeep/token/").json()
        claims = jwt.decode(
            answer["token"],
            "jwt-secret-for-tests-at-least-32-bytes",
            algorithms=["HS256"],
            audience="livekeep",
            issuer="hostapp",
        )
        self.assertEqual(claims["sub"], str(self.alice.pk))
        self.assertEqual(claims["name"], "alice")
        self.assertNotIn("role", claims)
        self.assertLessEqual(claims["exp"] - time.time(), 900 + 1)

    def test_an_anonymous_visitor_gets_no_token(self):
        self.assertEqual(self.client.get("/livekeep/token/").status_code, 302)

    def test_a_recorded_live_becomes_a_post_with_its_media(self):
        self.assertEqual(self.deliver("live.started", {"post": post_json(self.alice)}).status_code, 204)
        ended = {"post": post_json(self.alice, status="ended"), "media": media_json(self.alice)}
        self.assertEqual(self.deliver("live.ended", ended, webhook_id="msg_2").status_code, 204)
        post = Post.objects.get(livekeep_post_id=7)
        self.assertEqual(post.live_status, "ended")
        self.assertEqual(post.author, self.alice)
        media = post.media_files.get()
        self.assertEqual((media.duration, media.is_live_recording), (90.0, True))
        page = self.client.get("/").content.decode()
        self.assertIn("📹 Vidéo du live - Test caméra", page)
        self.assertIn("Durée : 01:30", page)
        self.assertIn("Enregistré le 23/07/2025 à 15:30", page)

    def test_a_redelivered_event_is_applied_once(self):
        ended = {"post": post_json(self.alice, status="ended"), "media": media_json(self.alice)}
        self.deliver("live.ended", ended, webhook_id="msg_9")
        Media.objects.all().delete()
        self.assertEqual(self.deliver("live.ended", ended, webhook_id="msg_9").status_code, 204)
        self.assertEqual(Media.objects.count(), 0, "the second delivery was skipped by its id")

    def test_a_late_start_does_not_reopen_an_ended_live(self):
        ended = {"post": post_json(self.alice, status="ended"), "media": None}
        self.deliver("live.ended", ended, webhook_id="msg_3")
        self.deliver("live.started", {"post": post_json(self.alice)}, webhook_id="msg_4")
        self.assertEqual(Post.objects.get(livekeep_post_id=7).live_status, "ended")

    def test_a_bad_signature_is_refused_and_changes_nothing(self):
        wrong = "whsec_" + "b3RoZXItc2VjcmV0LW90aGVyLXNlY3JldCE="
        answer = self.deliver("live.started", {"post": post_json(self.alice)}, secret=wrong)
        self.assertEqual(answer.status_code, 401)
        self.assertFalse(Post.objects.exists())

    def test_a_deleted_post_goes_away(self):
        self.deliver("live.started", {"post": post_json(self.alice)})
        self.deliver("post.deleted", {"post_id": 7}, webhook_id="msg_5")
        self.assertFalse(Post.objects.exists())

    def test_durations_past_an_hour_show_hours(self):
        from .templatetags.social_format import clock

        self.assertEqual(clock(90), "01:30")
        self.assertEqual(clock(3723), "1:02:03")
