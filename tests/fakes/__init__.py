"""In-memory fakes of every port the services use (``videogen.ports``), with the adapters'
semantics, so each branch of a use case is a millisecond unit test.

``make lint`` type-checks this package: the assignments below fail mypy when a fake stops
implementing its port.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.fakes.devices import FakeDeviceStore, FakePosters, FakePush
from tests.fakes.fal import FakeFal, completed, fal_request, in_progress, in_queue, video_url
from tests.fakes.jobs import make_job
from tests.fakes.media import FakeClip, FakeMediaSource, FakeMediaTools, FakeStream, FakeVideoStore
from tests.fakes.purchases import FakeAppStore, FakeAppStoreConsumption, FakePlay, FakePurchaseStore
from tests.fakes.store import FakeStore
from tests.fakes.workflow import FakeEvents, FakeWorkflow

__all__ = [
    "FakeAppStore",
    "FakeAppStoreConsumption",
    "FakeClip",
    "FakeDeviceStore",
    "FakeEvents",
    "FakeFal",
    "FakeMediaSource",
    "FakeMediaTools",
    "FakePlay",
    "FakePosters",
    "FakePurchaseStore",
    "FakePush",
    "FakeStore",
    "FakeStream",
    "FakeVideoStore",
    "FakeWorkflow",
    "completed",
    "fal_request",
    "in_progress",
    "in_queue",
    "make_job",
    "video_url",
]

if TYPE_CHECKING:
    from videogen import ports, ports_purchases

    _store: ports.JobStore = FakeStore()
    _fal: ports.FalGateway = FakeFal()
    _media: ports.MediaSource = FakeMediaSource()
    _stream: ports.MediaStream = FakeStream(b"")
    _videos: ports.VideoStore = FakeVideoStore()
    _media_tools: ports.MediaTools = FakeMediaTools(FakeVideoStore())
    _workflow: ports.Workflow = FakeWorkflow()
    _events: ports.EventPublisher = FakeEvents()
    _devices: ports.DeviceStore = FakeDeviceStore()
    _push: ports.PushGateway = FakePush()
    _posters: ports.PosterLookup = FakePosters()
    _purchases: ports_purchases.PurchaseStore = FakePurchaseStore(FakeStore())
    _app_store: ports_purchases.AppStoreVerification = FakeAppStore()
    _play: ports_purchases.PlayPublisher = FakePlay()
    _play_push: ports_purchases.PlayPushVerification = FakePlay()
    _consumption: ports_purchases.AppStoreConsumption = FakeAppStoreConsumption()
