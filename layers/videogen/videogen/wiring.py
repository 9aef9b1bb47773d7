"""Composition root: adapters and services built once per Lambda container.

Each factory is an ``lru_cache``d function of the settings, so handlers pay the
construction cost on the cold start only. Tests call :func:`reset` after
changing the environment.
"""

from __future__ import annotations

from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from videogen.config import Settings, get_settings

if TYPE_CHECKING:  # imported lazily below so each function loads only the adapters it uses
    from videogen.adapters.app_store import AppStoreVerifier
    from videogen.adapters.app_store_api import ApiKey, AppStoreServerApi
    from videogen.adapters.av_media import PyAvMedia
    from videogen.adapters.devices import DynamoDeviceStore
    from videogen.adapters.dynamo import DynamoStore
    from videogen.adapters.events import EventBridgePublisher
    from videogen.adapters.fal import FalClient
    from videogen.adapters.google_play import GooglePlayPublisher, GooglePlayPush
    from videogen.adapters.media import GuardedMediaSource, S3VideoStore
    from videogen.adapters.purchases import DynamoPurchaseStore
    from videogen.adapters.push import SnsPush
    from videogen.adapters.uploads import S3UploadBucket
    from videogen.adapters.workflow import StepFunctionsWorkflow
    from videogen.domain.limits import UserLimits
    from videogen.domain.products import Catalog
    from videogen.domain.registry import Registry
    from videogen.ports import UrlSigner
    from videogen.services.cancel import CancelJob
    from videogen.services.completion import JobFinisher
    from videogen.services.expiry import ExpireJob
    from videogen.services.fal_check import CheckJob
    from videogen.services.fal_poll import FalPoller
    from videogen.services.fal_submit import SubmitToFal
    from videogen.services.notify import Notifier
    from videogen.services.poster import PosterMaker
    from videogen.services.purchases import PurchaseService
    from videogen.services.reconcile import Reconciler
    from videogen.services.submission import SubmitLimits
    from videogen.services.uploads import UploadValidator
    from videogen.services.webhook import WebhookService
    from videogen.services.webhook_link import WebhookLinks

_BOTO = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=3, read_timeout=10)


@cache
def client(service: str) -> Any:
    config = _BOTO.merge(Config(signature_version="s3v4")) if service == "s3" else _BOTO  # SigV4 presigned URLs
    return boto3.session.Session().client(service, config=config)  # type: ignore[call-overload]


@lru_cache(maxsize=1)
def settings() -> Settings:
    return get_settings()


@lru_cache(maxsize=1)
def store() -> DynamoStore:
    return store_for(settings().table_name)


def store_for(table_name: str) -> DynamoStore:
    """A store on a named table (the admin CLI points at a deployed stack's table)."""
    from videogen.adapters.dynamo import DynamoStore

    return DynamoStore(client("dynamodb"), table_name)


@lru_cache(maxsize=1)
def registry() -> Registry:
    from videogen.domain.registry import Registry

    return Registry(disabled=settings().disabled_model_ids)


@lru_cache(maxsize=1)
def workflow() -> StepFunctionsWorkflow:
    from videogen.adapters.workflow import StepFunctionsWorkflow

    return StepFunctionsWorkflow(client("stepfunctions"), settings().state_machine_arn)


@lru_cache(maxsize=1)
def videos() -> S3VideoStore:
    from videogen.adapters.media import S3VideoStore

    s = settings()
    return S3VideoStore(client("s3"), s.bucket_name, part_bytes=s.media_part_bytes, urls=media_urls())


@lru_cache(maxsize=1)
def media_urls() -> UrlSigner:
    """CloudFront signed URLs when the stack has the media CDN (MediaCdn=on), else S3 presigned GETs;
    either way one URL per object and window (adapters/media_urls.py)."""
    from videogen.adapters.media_urls import CloudFrontUrls, S3WindowedUrls, client_credentials

    s = settings()
    if s.media_cdn_domain:
        return CloudFrontUrls(
            s.media_cdn_domain, s.media_cdn_key_id, media_cdn_private_key, window_s=s.media_url_window_s
        )
    s3 = client("s3")
    return S3WindowedUrls(s3, s.bucket_name, client_credentials(s3), window_s=s.media_url_window_s)


def media_cdn_private_key() -> str:
    """The PEM of the CloudFront URL-signing key (Secrets Manager, cached by Powertools; env locally)."""
    s = settings()
    if s.media_cdn_private_key:
        return s.media_cdn_private_key
    from aws_lambda_powertools.utilities import parameters

    return str(parameters.get_secret(s.media_cdn_private_key_parameter, max_age=300))


@lru_cache(maxsize=1)
def media() -> GuardedMediaSource:
    from videogen.adapters.media import GuardedMediaSource

    s = settings()
    return GuardedMediaSource(
        allowed_hosts=s.allowed_hosts,
        require_https=s.media_require_https,
        max_bytes=s.media_max_bytes,
        timeout_s=s.media_timeout_s,
    )


@lru_cache(maxsize=1)
def events() -> EventBridgePublisher:
    from videogen.adapters.events import EventBridgePublisher

    return EventBridgePublisher(client("events"), settings().event_bus_name)


@lru_cache(maxsize=1)
def fal() -> FalClient:
    from videogen.adapters.fal import FalClient, fal_key_provider

    s = settings()
    return FalClient(s.fal_queue_url, fal_key_provider(s), timeout_s=s.fal_timeout_s)


@lru_cache(maxsize=1)
def finisher() -> JobFinisher:
    from videogen.services.completion import JobFinisher

    return JobFinisher(store(), media(), videos(), events())


def webhook_secret() -> str:
    """The per-deployment webhook secret (Secrets Manager, cached by Powertools; env locally).
    Never sent anywhere: the URL carries values derived from it (:func:`webhook_links`)."""
    s = settings()
    if s.webhook_token:
        return s.webhook_token
    if not s.webhook_token_parameter:
        return ""
    from aws_lambda_powertools.utilities import parameters

    return str(parameters.get_secret(s.webhook_token_parameter, max_age=300))


@lru_cache(maxsize=1)
def webhook_links() -> WebhookLinks:
    from videogen.services.webhook_link import WebhookLinks

    return WebhookLinks(webhook_secret)


@lru_cache(maxsize=1)
def fal_poller() -> FalPoller:
    from videogen.services.fal_poll import FalPoller

    return FalPoller(store(), fal(), finisher())


@lru_cache(maxsize=1)
def submit_to_fal() -> SubmitToFal:
    from videogen.services.fal_submit import SubmitToFal

    links = webhook_links()
    return SubmitToFal(
        store(),
        registry(),
        fal(),
        finisher(),
        lambda job_id: links.url(settings().webhook_base_url, job_id),
        videos(),
    )


@lru_cache(maxsize=1)
def check_job() -> CheckJob:
    from videogen.services.fal_check import CheckJob

    return CheckJob(store(), fal_poller())


@lru_cache(maxsize=1)
def expire_job() -> ExpireJob:
    from videogen.services.expiry import ExpireJob

    return ExpireJob(store(), fal(), fal_poller(), finisher())


@lru_cache(maxsize=1)
def cancel_job() -> CancelJob:
    from videogen.services.cancel import CancelJob

    return CancelJob(store(), fal_poller(), finisher())


@lru_cache(maxsize=1)
def user_limits() -> UserLimits:
    from videogen.domain.limits import UserLimits

    s = settings()
    return UserLimits(
        requests_per_minute=s.user_requests_per_minute,
        burst=s.user_request_burst,
        daily_credit_cap=s.daily_credit_cap or 0,
    )


@lru_cache(maxsize=1)
def submit_limits() -> SubmitLimits:
    from videogen.services.submission import SubmitLimits

    s = settings()
    return SubmitLimits(
        max_active_jobs=s.max_active_jobs,
        per_user=user_limits(),
        idempotency_ttl_s=s.idempotency_ttl_hours * 3600,
        time_scale=s.time_scale,
    )


@lru_cache(maxsize=1)
def webhooks() -> WebhookService:
    from videogen.adapters.fal import parse_delivery
    from videogen.adapters.webhook_signature import WebhookVerifier
    from videogen.services.webhook import WebhookService

    s = settings()
    verifier = WebhookVerifier(
        s.fal_jwks_url,
        tolerance_s=s.webhook_tolerance_s,
        cache_s=s.jwks_cache_s,
        min_refetch_interval_s=s.jwks_min_refetch_s,
        expected_user_id=s.fal_webhook_user_id,
    )
    return WebhookService(store(), finisher(), verifier, webhook_links(), parse_delivery)


@lru_cache(maxsize=1)
def reconciler() -> Reconciler:
    from videogen.services.reconcile import Reconciler

    s = settings()
    return Reconciler(
        store(),
        registry(),
        workflow(),
        fal_poller(),
        expire_job(),
        finisher(),
        grace_s=s.reconcile_grace_s,
        batch=s.reconcile_batch,
        time_scale=s.time_scale,
        purchases=purchases().reconcile if s.play_package_name else None,
    )


@lru_cache(maxsize=1)
def media_tools() -> PyAvMedia:
    """PyAV: only the media function and the upload validator have its layer (layers/media)."""
    from videogen.adapters.av_media import PyAvMedia

    return PyAvMedia(client("s3"), settings().bucket_name)


@lru_cache(maxsize=1)
def poster_maker() -> PosterMaker:
    from videogen.services.poster import PosterMaker

    return PosterMaker(store(), media_tools())


@lru_cache(maxsize=1)
def device_store() -> DynamoDeviceStore:
    from videogen.adapters.devices import DynamoDeviceStore

    return DynamoDeviceStore(client("dynamodb"), settings().table_name)


@lru_cache(maxsize=1)
def push() -> SnsPush:
    from videogen.adapters.push import SnsPush
    from videogen.domain.devices import Platform

    s = settings()
    apps = {
        Platform.APNS: s.push_apns_arn,
        Platform.APNS_SANDBOX: s.push_apns_sandbox_arn,
        Platform.FCM: s.push_fcm_arn,
    }
    return SnsPush(client("sns"), apps)


@lru_cache(maxsize=1)
def notifier() -> Notifier:
    from videogen.services.notify import JobPosters, Notifier

    s = settings()
    return Notifier(
        device_store(),
        push(),
        JobPosters(store(), videos(), s.video_url_ttl_s),
        poster_wait_s=s.push_poster_wait_s,
        poster_poll_s=s.push_poster_poll_s,
    )


# --- uploads -------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def upload_bucket() -> S3UploadBucket:
    from videogen.adapters.uploads import S3UploadBucket

    return S3UploadBucket(client("s3"), settings().bucket_name)


@lru_cache(maxsize=1)
def upload_validator() -> UploadValidator:
    from videogen.adapters.av_media import PyAvProbe  # PyAV: the validator has the media layer too
    from videogen.services.uploads import UploadValidator

    return UploadValidator(store(), upload_bucket(), PyAvProbe())


# --- products and purchases -----------------------------------------------------------------


@lru_cache(maxsize=1)
def catalog() -> Catalog:
    """The credit packs on sale (the Products parameter, validated when the settings are read)."""
    from videogen.domain.products import parse_products

    return parse_products(settings().products)


def account_token_secret() -> str:
    """The per-deployment secret every user's app_account_token is derived from (Secrets Manager,
    cached by Powertools; env locally). Never rotated: a new secret would give every user a new
    token, and purchases the app made with the old one would name nobody (template.yaml)."""
    s = settings()
    if s.account_token_secret:
        return s.account_token_secret
    from aws_lambda_powertools.utilities import parameters

    return str(parameters.get_secret(s.account_token_secret_parameter, max_age=3600))


def account_token(user_id: str) -> str:
    """``user_id``'s app_account_token (domain/account_token.py)."""
    from videogen.domain.account_token import app_account_token

    return app_account_token(account_token_secret(), user_id)


@lru_cache(maxsize=1)
def app_store() -> AppStoreVerifier | None:
    """Apple's verifier for our app; None when the stack sells nothing on the App Store (no bundle
    id). Trusts Apple's roots; only a local stack (settings.is_local) may trust its generated root."""
    import base64

    from videogen.adapters.app_store import AppStoreConfig, AppStoreVerifier

    s = settings()
    if not s.app_store_bundle_id:
        return None
    config = AppStoreConfig(s.app_store_bundle_id, s.app_store_app_apple_id, s.app_store_accept_sandbox)
    if s.app_store_local_root:
        return AppStoreVerifier.trusting(
            config, catalog(), [base64.b64decode(s.app_store_local_root)], local=s.is_local
        )
    return AppStoreVerifier(config, catalog())


def play_service_account() -> str:
    """The Play service account's JSON key (Secrets Manager, cached by Powertools; env locally)."""
    s = settings()
    if s.play_service_account:
        return s.play_service_account
    from aws_lambda_powertools.utilities import parameters

    return str(parameters.get_secret(s.play_service_account_secret_parameter, max_age=3600))


def _local_url(url: str) -> str:
    if url and not settings().is_local:
        raise ValueError("a deployed configuration calls Google's own Publisher API and certificates only")
    return url


@lru_cache(maxsize=1)
def play() -> GooglePlayPublisher | None:
    """The Android Publisher API for our package; None when the stack sells nothing on Google Play.
    Google's base URL; only a local stack (settings.is_local) may point it at its local one."""
    from videogen.adapters.google_play import GOOGLE_APIS, GooglePlayPublisher, PlayConfig

    s = settings()
    if not s.play_package_name:
        return None
    base = _local_url(s.play_local_api_url) or GOOGLE_APIS
    return GooglePlayPublisher(PlayConfig(s.play_package_name, base), play_service_account)


@lru_cache(maxsize=1)
def play_push() -> GooglePlayPush | None:
    """The Play push verifier; None without a package name (every push is then 401)."""
    from videogen.adapters.google_play import GOOGLE_CERTS, GooglePlayPush, PushConfig

    s = settings()
    if not s.play_package_name:
        return None
    certs = _local_url(s.play_local_certs_url) or GOOGLE_CERTS
    return GooglePlayPush(
        PushConfig(s.play_package_name, s.play_push_audience, s.play_push_service_account_email, certs)
    )


def app_store_api_key() -> ApiKey:
    """The App Store Connect API key that signs our App Store Server API requests (Secrets
    Manager, cached by Powertools; read on the first CONSUMPTION_REQUEST, not at cold start)."""
    from aws_lambda_powertools.utilities import parameters

    from videogen.adapters.app_store_api import ApiKey

    return ApiKey.parse(str(parameters.get_secret(settings().app_store_api_key_parameter, max_age=3600)))


@lru_cache(maxsize=1)
def app_store_api() -> AppStoreServerApi | None:
    """Apple's App Store Server API for CONSUMPTION_REQUEST answers; None without an App Store app
    or without an API key (AppStoreConnectApiKeySecretArn): the requests are then acknowledged only."""
    from videogen.adapters.app_store_api import AppStoreServerApi

    s = settings()
    if not s.app_store_bundle_id or not s.app_store_api_key_parameter:
        return None
    return AppStoreServerApi(app_store_api_key, s.app_store_bundle_id, s.app_store_server_api_url if s.is_local else "")


@lru_cache(maxsize=1)
def purchase_store() -> DynamoPurchaseStore:
    from videogen.adapters.purchases import DynamoPurchaseStore

    return DynamoPurchaseStore(client("dynamodb"), settings().table_name)


@lru_cache(maxsize=1)
def purchases() -> PurchaseService:
    from videogen.services.purchases import PurchaseService

    s = settings()
    return PurchaseService(
        purchase_store(),
        app_store(),
        account_token,
        catalog(),
        play=play(),
        play_push=play_push(),
        consumption=app_store_api(),
        consented=s.app_store_consumption_consent,
    )


def reset() -> None:
    """Forget every cached adapter and the settings (tests, local stack restarts)."""
    get_settings.cache_clear()
    for factory in (
        client,
        settings,
        store,
        registry,
        workflow,
        videos,
        media_urls,
        media,
        events,
        fal,
        finisher,
        fal_poller,
        submit_to_fal,
        check_job,
        expire_job,
        cancel_job,
        submit_limits,
        user_limits,
        webhooks,
        webhook_links,
        reconciler,
        media_tools,
        poster_maker,
        device_store,
        push,
        notifier,
        upload_bucket,
        upload_validator,
        catalog,
        app_store,
        play,
        play_push,
        app_store_api,
        purchase_store,
        purchases,
    ):
        factory.cache_clear()
