"""Runtime settings, parsed once from the environment by pydantic-settings.

Nothing reads ``os.environ`` at import time: handlers call :func:`get_settings`
(cached) on first use, and tests call ``get_settings.cache_clear()`` (``wiring.reset()``)
after changing the environment.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MEDIA_HOSTS = "v3.fal.media,v3b.fal.media,fal.media,storage.googleapis.com"


class Settings(BaseSettings):
    """Every tunable of the shared package, one field each (env var = upper-case name)."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore")

    environment: str = Field("dev", description="dev | prod | local | test")
    table_name: str = "videogen"
    bucket_name: str = "videogen-videos"
    state_machine_arn: str = ""
    event_bus_name: str = "videogen"

    # credits and limits
    max_active_jobs: int = Field(10, ge=1)
    idempotency_ttl_hours: int = Field(48, ge=24)
    disabled_models: str = Field("", description="comma-separated registry ids taken off sale")
    max_body_bytes: int = Field(64 * 1024, ge=1, description="the request body cap of every route (413)")
    # per-user limits (videogen/domain/limits.py): submits that would write and uploads share one
    # GCRA budget of `user_request_burst` at once, then `user_requests_per_minute`; 429 rate_limited
    user_requests_per_minute: int = Field(30, ge=1, le=60_000)
    user_request_burst: int = Field(10, ge=1, le=10_000)
    daily_credit_cap: int | None = Field(None, ge=0, description="credits per user per UTC day; 0/None: no cap")

    # fal.ai
    fal_queue_url: str = "https://queue.fal.run"
    fal_jwks_url: str = "https://rest.alpha.fal.ai/.well-known/jwks.json"
    fal_key_parameter: str = Field("", description="Secrets Manager id or SSM SecureString name of FAL_KEY")
    fal_key: str = Field("", description="FAL_KEY itself (local development only)")
    fal_timeout_s: float = 10.0
    webhook_base_url: str = Field("", description="public base URL of the API, e.g. https://x.execute-api...")
    webhook_token_parameter: str = ""
    webhook_token: str = Field("", description="per-deployment token in the webhook URL (local only)")
    webhook_tolerance_s: int = 300
    fal_webhook_user_id: str = Field("", description="when set, only deliveries signed for this fal user id")
    jwks_cache_s: int = Field(3600, le=24 * 3600)
    jwks_min_refetch_s: float = Field(10.0, ge=0, description="unknown-key refetches at most this often")

    # media transfer
    media_allowed_hosts: str = DEFAULT_MEDIA_HOSTS
    media_require_https: bool = True
    media_max_bytes: int = 2 * 1024**3
    media_part_bytes: int = 8 * 1024**2
    media_timeout_s: float = 30.0
    video_url_ttl_s: int = Field(
        3600, gt=0, description="a media URL stays valid at least this long after it is handed out"
    )

    # media URLs an app can cache (adapters/media_urls.py): one URL per object and window
    media_url_window_s: int = Field(3600, gt=0, description="every read within one such window gets the same URL")
    media_cdn_domain: str = Field("", description="CloudFront domain serving the bucket; empty: S3 presigned URLs")
    media_cdn_key_id: str = Field("", description="CloudFront public key id of the URL-signing key pair")
    media_cdn_private_key_parameter: str = Field("", description="Secrets Manager id of the PEM private key")
    media_cdn_private_key: str = Field("", description="the PEM private key itself (local/test only)")

    # step functions timing
    time_scale: float = Field(1.0, gt=0, description="multiplies every wait of the job workflow (local: < 1)")

    # reconciler
    reconcile_batch: int = 50
    reconcile_grace_s: int = 120

    # push notifications (SNS mobile push; a platform with an empty ARN is off)
    push_apns_arn: str = Field("", description="SNS platform application ARN for APNs (production)")
    push_apns_sandbox_arn: str = Field("", description="SNS platform application ARN for the APNs sandbox")
    push_fcm_arn: str = Field("", description="SNS platform application ARN for FCM (HTTP v1)")
    push_poster_wait_s: float = Field(
        20.0, ge=0, description="a completed job's notification waits this long for its poster"
    )
    push_poster_poll_s: float = Field(1.0, gt=0)

    # credit packs and store purchases (issue 12; domain/products.py, adapters/app_store.py)
    products: str = Field("", description="the credit packs on sale: a JSON array (domain/products.py)")
    account_token_secret_parameter: str = Field("", description="Secrets Manager id of the account-token secret")
    account_token_secret: str = Field("", description="the account-token secret itself (local/test only)")
    app_store_bundle_id: str = Field("", description="the iOS app's bundle id; empty: no App Store purchases")
    app_store_app_apple_id: int = Field(0, ge=0, description="the app's Apple ID (App Store Connect)")
    app_store_accept_sandbox: bool = Field(True, description="credit sandbox purchases (App Review, TestFlight)")
    app_store_api_key_parameter: str = Field(
        "", description="Secrets Manager id of the App Store Connect API key (CONSUMPTION_REQUEST answers)"
    )
    app_store_consumption_consent: bool = Field(
        False, description="the app obtains each buyer's consent to share consumption data with Apple"
    )
    app_store_server_api_url: str = Field(
        "", description="base URL of the App Store Server API (honoured only when is_local; else Apple's)"
    )
    app_store_local_root: str = Field(
        "", description="base64 DER of the local stack's App Store root (honoured only when is_local)"
    )

    play_package_name: str = Field("", description="the Android app's package name; empty: no Google Play purchases")
    play_service_account_secret_parameter: str = Field(
        "", description="Secrets Manager id of the Play service account's JSON key"
    )
    play_service_account: str = Field("", description="the service account's JSON key itself (local/test only)")
    play_push_audience: str = Field("", description="the audience of the Play push subscription's OIDC tokens")
    play_push_service_account_email: str = Field("", description="the Play push subscription's service account")
    play_local_api_url: str = Field("", description="the local Publisher API's base URL (honoured only when is_local)")
    play_local_certs_url: str = Field(
        "", description="the local push signer's certificates URL (honoured only when is_local)"
    )

    # crash points (never honoured outside local/test)
    crash_points: str = ""
    crash_rate: float = 0.0

    @field_validator("products")
    @classmethod
    def _valid_products(cls, v: str) -> str:
        from videogen.domain.products import parse_products

        parse_products(v)  # a bad Products parameter fails the cold start, naming the pack and field
        return v

    @field_validator("media_require_https", "app_store_accept_sandbox", "app_store_consumption_consent", mode="before")
    @classmethod
    def _boolish(cls, v: object) -> object:
        if isinstance(v, str):
            return v.strip().lower() in {"1", "true", "yes", "on"}
        return v

    @property
    def allowed_hosts(self) -> frozenset[str]:
        return frozenset(h.strip().lower() for h in self.media_allowed_hosts.split(",") if h.strip())

    @property
    def disabled_model_ids(self) -> frozenset[str]:
        return frozenset(m.strip() for m in self.disabled_models.split(",") if m.strip())

    @property
    def is_local(self) -> bool:
        return self.environment in {"local", "test"}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, read from the environment on first use."""
    return Settings()
