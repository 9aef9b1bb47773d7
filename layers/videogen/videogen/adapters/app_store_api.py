"""Apple's App Store Server API, Send Consumption Information: implements
:class:`videogen.ports_purchases.AppStoreConsumption` with Apple's library (``app-store-server-library``
3.1.2, ``AppStoreServerAPIClient.send_consumption_information`` → PUT
``/inApps/v2/transactions/consumption/{transactionId}``; the v1 ``send_consumption_data`` is deprecated).

The client signs each request with our App Store Connect API key (an In-App Purchase key: ES256,
its key id and the issuer id), read from Secrets Manager on first use (wiring.app_store_api_key),
never logged. Production notifications are answered at ``api.storekit.apple.com``, sandbox ones at
``api.storekit-sandbox.apple.com`` (the library's choice by environment); only a local stack may
point both at another base URL (its local App Store Server API, devstack/stores).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from appstoreserverlibrary.api_client import APIException, AppStoreServerAPIClient
from appstoreserverlibrary.models.ConsumptionRequest import ConsumptionRequest
from appstoreserverlibrary.models.DeliveryStatus import DeliveryStatus
from appstoreserverlibrary.models.Environment import Environment
from appstoreserverlibrary.models.RefundPreference import RefundPreference
from requests import RequestException

from videogen.domain.errors import ServiceUnavailable
from videogen.domain.purchases import ConsumptionInfo, StoreEnvironment


@dataclass(frozen=True)
class ApiKey:
    """An App Store Connect API key (In-App Purchase key) as its secret holds it (JSON)."""

    key_id: str
    issuer_id: str
    private_key: str  # PEM (the .p8 file)

    @classmethod
    def parse(cls, secret: str) -> ApiKey:
        """``{"key_id", "issuer_id", "private_key"}``; ValueError naming what is missing (never the key)."""
        try:
            data = json.loads(secret)
        except ValueError:
            raise ValueError("the App Store Connect API key secret is not JSON") from None
        if not isinstance(data, dict):
            data = {}
        missing = [k for k in ("key_id", "issuer_id", "private_key") if not isinstance(data.get(k), str) or not data[k]]
        if missing:
            raise ValueError(f"the App Store Connect API key secret lacks {', '.join(missing)}")
        return cls(data["key_id"], data["issuer_id"], data["private_key"])


class _Client(AppStoreServerAPIClient):
    """Apple's client, at ``base_url`` when one is given (a local stack's API; never deployed)."""

    def __init__(self, key: ApiKey, bundle_id: str, environment: Environment, base_url: str = "") -> None:
        super().__init__(key.private_key.encode(), key.key_id, key.issuer_id, bundle_id, environment)
        self._override = base_url.rstrip("/")

    def _get_full_url(self, path: str) -> str:
        return self._override + path if self._override else str(super()._get_full_url(path))


_ENVIRONMENTS = {"production": Environment.PRODUCTION, "sandbox": Environment.SANDBOX}


class AppStoreServerApi:
    def __init__(self, key: Callable[[], ApiKey], bundle_id: str, base_url: str = "") -> None:
        self._key = key
        self._bundle_id = bundle_id
        self._base_url = base_url

    def send(self, transaction_id: str, environment: StoreEnvironment, info: ConsumptionInfo) -> None:
        client = _Client(self._key(), self._bundle_id, _ENVIRONMENTS[environment], self._base_url)
        body = ConsumptionRequest(
            customerConsented=info.customer_consented,
            sampleContentProvided=info.sample_content_provided,
            deliveryStatus=DeliveryStatus(info.delivery_status),
            consumptionPercentage=info.consumption_milli,
            refundPreference=RefundPreference(info.refund_preference),
        )
        try:
            client.send_consumption_information(transaction_id, body)
        except APIException as exc:
            raise ServiceUnavailable(
                f"the App Store Server API refused the consumption information: HTTP {exc.http_status_code}"
                f" {exc.raw_api_error or ''}".rstrip()
            ) from None
        except RequestException as exc:
            raise ServiceUnavailable(f"the App Store Server API did not answer ({type(exc).__name__})") from None
