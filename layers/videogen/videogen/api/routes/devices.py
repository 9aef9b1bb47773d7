"""PUT /v1/devices/{device_id}, GET /v1/devices, DELETE /v1/devices/{device_id} (the DevicesFunction):
the caller's push notification targets. DynamoDB and SNS platform endpoints only."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Path
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from videogen import contract, wiring
from videogen.api.http import caller
from videogen.api.openapi import CACHE_CONTROL, SECURED, ok, problems
from videogen.domain import errors
from videogen.domain.devices import DEVICE_ID_MAX, DEVICE_ID_PATTERN
from videogen.services import devices

router = APIGatewayHttpRouter()

DeviceId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=DEVICE_ID_MAX,
        pattern=DEVICE_ID_PATTERN,
        description="The app's own install id (1-128 of A-Z a-z 0-9 . _ ~ : @ + = -)",
    ),
]


@router.put(
    "/v1/devices/<device_id>",
    operation_id="putDevice",
    summary="Register or update a push notification target",
    description="Creates the device, or updates its platform and token (not counted again). The token is "
    "stored, never answered. At most 10 devices per user.",
    tags=["devices"],
    security=SECURED,
    responses={
        **ok(contract.Device, "the device (without its token)"),
        **problems(errors.BadRequest, errors.ValidationFailed, errors.TooManyDevices, errors.ServiceUnavailable),
    },
)
def put_device(device_id: DeviceId, body: Annotated[contract.DeviceRequest, Body()]) -> contract.Device:
    return devices.register_device(
        wiring.device_store(), wiring.push(), caller(router), device_id, body.platform, body.token
    )


@router.get(
    "/v1/devices",
    operation_id="listDevices",
    summary="The caller's devices, oldest first",
    tags=["devices"],
    security=SECURED,
    responses={**ok(contract.DeviceList, "the devices (without their tokens)"), **problems()},
)
def list_devices() -> contract.DeviceList:
    return devices.list_devices(wiring.device_store(), caller(router))


@router.delete(
    "/v1/devices/<device_id>",
    operation_id="deleteDevice",
    summary="Remove a push notification target",
    tags=["devices"],
    security=SECURED,
    responses={
        204: {"description": "removed", "headers": CACHE_CONTROL},  # type: ignore[typeddict-item]
        **problems(errors.BadRequest, errors.DeviceNotFound, errors.ServiceUnavailable),
    },
)
def delete_device(device_id: DeviceId) -> Response[None]:
    devices.remove_device(wiring.device_store(), wiring.push(), caller(router), device_id)
    return Response(status_code=204)
