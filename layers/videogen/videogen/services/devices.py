"""The devices routes' use cases: register (create or update), list, remove.

The SNS endpoint is made at registration (PUT), not at the first send: the registration is when
the app hands us a fresh token, so that is when a token SNS rejects can be answered (422) instead
of vanishing later; an endpoint the app re-registers is enabled again (AWS's registration flow);
and a job's notifications then cost one Publish per device, nothing more. A device registered
while push was off for its platform, or while SNS did not answer, gets its endpoint at its first
notification instead (:class:`videogen.services.notify.Notifier`).
"""

from __future__ import annotations

import contextlib

from videogen import contract
from videogen.domain.devices import Device, Platform
from videogen.domain.errors import DeviceChanged, DeviceNotFound, PushEndpointGone, PushUnavailable, ValidationFailed
from videogen.observability import count, logger
from videogen.ports import DeviceStore, PushGateway


def device_view(device: Device) -> contract.Device:
    """The contract's Device: never the token, never the endpoint."""
    return contract.Device(
        id=device.id, platform=device.platform, created_at=device.created_at, updated_at=device.updated_at
    )


def register_device(
    store: DeviceStore, push: PushGateway, user_id: str, device_id: str, platform: Platform, token: str
) -> contract.Device:
    device, before = store.put_device(user_id, device_id, platform, token)
    if before is not None and before.endpoint_arn and before.platform != platform:
        push.delete_endpoint(before.endpoint_arn)  # the other platform's application holds it
    if push.enabled(platform):
        try:
            arn = push.ensure_endpoint(platform, token, device.endpoint_arn)
        except PushEndpointGone:
            _forget(store, device)
            count("PushTokenRejected")
            raise ValidationFailed([{"loc": "body.token", "msg": "the push service rejected this token"}]) from None
        except PushUnavailable:
            logger.warning("push endpoint not created; the first notification will", extra={"device_id": device_id})
            count("PushEndpointDeferred")
            return device_view(device)
        if arn != device.endpoint_arn:
            with contextlib.suppress(DeviceChanged):  # re-registered meanwhile: that one stores its own
                device = store.set_endpoint(device, arn)
    count("DeviceRegistered")
    return device_view(device)


def _forget(store: DeviceStore, device: Device) -> None:
    with contextlib.suppress(DeviceChanged, DeviceNotFound):  # re-registered or removed meanwhile
        store.delete_device(device.user_id, device.id, token=device.token)


def list_devices(store: DeviceStore, user_id: str) -> contract.DeviceList:
    return contract.DeviceList(items=[device_view(d) for d in store.list_devices(user_id)])


def remove_device(store: DeviceStore, push: PushGateway, user_id: str, device_id: str) -> None:
    """``DeviceNotFound`` for a device the caller does not have (another user's included). The SNS
    endpoint goes with it unless another device registered the token since (it is theirs now)."""
    device = store.delete_device(user_id, device_id)
    if device.endpoint_arn and store.token_owner(device.token) in (None, (user_id, device_id)):
        push.delete_endpoint(device.endpoint_arn)
    count("DeviceRemoved")
