"""The local stack: the whole system on this machine, no AWS account, no Docker.

* moto (a ThreadedMotoServer) plays AWS: DynamoDB, S3, Step Functions — whose
  interpreter runs the REAL statemachines/video_job.asl.json — EventBridge and
  Secrets Manager. Resources are created from template.yaml.
* Lambda invokes (from the state machine, the gateway and the schedule) run the
  REAL handlers in this process.
* The local gateway serves the API on :3000 (``PORT``); the fal.ai simulator
  listens on :3001 (``FALSIM_PORT``), unless ``FAL_KEY`` is set: then the real
  fal.ai is used (webhooks when ``PUBLIC_URL`` is set, the poll loop otherwise).
* Every server binds ``HOST`` (127.0.0.1), and every URL the stack gives out or signs
  (the API, presigned video URLs, the webhook URL, the token issuer) names that host;
  ``HOST=0.0.0.0`` binds every interface and names the machine's primary LAN address.
* The reconciler runs every ``RECONCILE_EVERY_S`` seconds, as EventBridge would.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from devstack.auth import LocalAuthority, load_or_create_key
from devstack.gateway import Cors, LocalApi, serve
from devstack.stores.local_store import API_PREFIX, CONSUMPTION_PATH
from devstack.template import SamTemplate
from videogen import jsonbody

MOTO_CONFIG = {"stepfunctions": {"execute_state_machine": True}}
ROOT = Path(__file__).resolve().parents[1]
KEY_FILE = ROOT / ".local" / "jwt-signing-key.pem"  # gitignored; kept so tokens outlive a restart


class ConfigError(Exception):
    """A setting the stack cannot start with; its message is one line naming the setting."""


class PortInUse(ConfigError):
    pass


def _env_number(name: str, default: float | None, kind: type[int] | type[float], low: float, high: float) -> Any:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        what = "a whole number" if kind is int else "a number"
        raise ConfigError(f"{name}={raw!r} is not {what} from {low:g} to {high:g}")
    return value


class LocalUser(BaseModel):
    """The body of ``POST /_local/users``, read strictly (no ``5`` for ``"5"``, no unknown keys)
    and depth-bounded like every body the API reads (:mod:`videogen.jsonbody`)."""

    model_config = ConfigDict(strict=True, extra="forbid")

    user_id: str = Field(min_length=1, max_length=128)
    credits: int = 0
    grant_id: str | None = Field(default=None, min_length=1, max_length=128)

    @classmethod
    def from_body(cls, body: bytes) -> LocalUser:
        return cls.model_validate(jsonbody.loads(body or b"{}"))


class LocalDevice(BaseModel):
    """The body of ``POST /_local/push/disable``."""

    model_config = ConfigDict(strict=True, extra="forbid")

    user_id: str = Field(min_length=1, max_length=128)
    device_id: str = Field(min_length=1, max_length=128)

    @classmethod
    def from_body(cls, body: bytes) -> LocalDevice:
        return cls.model_validate(jsonbody.loads(body or b"{}"))


def _first_line(exc: Exception) -> str:
    """What is wrong with a body, in one short line (pydantic's first error: where, then what)."""
    if isinstance(exc, ValidationError) and exc.errors():
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        return f"{where}: {first['msg']}"[:200]
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


ANY_ADDRESS = ("0.0.0.0", "")


def lan_address() -> str:
    """This machine's primary LAN address: the source address of its default route (a UDP
    "connect" sends nothing); 127.0.0.1 on a machine without a network."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 9))
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"


# The per-user limits (videogen/domain/limits.py) a run may set in its environment, e.g.
# `USER_REQUEST_BURST=3 make run`; otherwise the template's parameter defaults apply.
LIMIT_ENV = ("USER_REQUESTS_PER_MINUTE", "USER_REQUEST_BURST", "DAILY_CREDIT_CAP")


@dataclass
class StackConfig:
    host: str = "127.0.0.1"
    port: int = 3000
    falsim_port: int = 3001
    moto_port: int = 3005
    play_port: int = 0  # the local Google Play (Publisher API, token endpoint, certs); 0: any free port,
    # only the stack's own functions call it (its URL is in their environment)
    time_scale: float = 0.02
    reconcile_every_s: float = 10.0
    reconcile_grace_s: int = 10
    fal_key: str = ""  # set: talk to the real fal.ai instead of the simulator
    public_url: str = ""  # with a real fal key: where fal can reach the webhook
    sim_seed: int | None = None
    sim_config: dict[str, Any] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)
    key_file: Path | None = None  # the local authority's signing key; None: a new one per start

    @property
    def public_host(self) -> str:
        """The host every URL the stack gives out names: ``host``, or the LAN address when ``host``
        is every interface."""
        return lan_address() if self.host in ANY_ADDRESS else self.host

    @classmethod
    def from_env(cls) -> StackConfig:
        env = os.environ
        return cls(
            host=env.get("HOST") or "127.0.0.1",
            port=_env_number("PORT", 3000, int, 0, 65535),
            falsim_port=_env_number("FALSIM_PORT", 3001, int, 0, 65535),
            moto_port=_env_number("MOTO_PORT", 3005, int, 0, 65535),
            play_port=_env_number("PLAY_PORT", 0, int, 0, 65535),
            time_scale=_env_number("TIME_SCALE", 0.02, float, 1e-6, 1000),
            reconcile_every_s=_env_number("RECONCILE_EVERY_S", 10, float, 0, 86_400),
            reconcile_grace_s=_env_number("RECONCILE_GRACE_S", 10, int, 0, 86_400),
            fal_key=env.get("FAL_KEY", ""),
            public_url=env.get("PUBLIC_URL", ""),
            sim_seed=_env_number("FALSIM_SEED", None, int, 0, 2**63),
            extra_env={k: env[k] for k in ("CRASH_POINTS", "CRASH_RATE", *LIMIT_ENV) if k in env},
            key_file=Path(env.get("JWT_KEY_FILE") or KEY_FILE),
        )

    def check(self) -> None:
        """:class:`ConfigError` (one line, naming the setting) for what the stack cannot start
        with: a HOST that is not an address of this machine, two servers on one port, a port in
        use, a JWT_KEY_FILE that cannot be read as an RSA key."""
        self.check_host()
        self.check_ports()
        self.check_key_file()

    def check_host(self) -> None:
        with socket.socket() as probe:
            try:
                probe.bind((self.host, 0))
            except (socket.gaierror, UnicodeError):
                raise ConfigError(f"HOST={self.host}: no such host (not an address, and it does not resolve)") from None
            except OSError:
                raise ConfigError(
                    f"HOST={self.host} is not an address of this machine (try 127.0.0.1 or 0.0.0.0)"
                ) from None

    def check_key_file(self) -> None:
        if self.key_file is None:
            return
        try:
            load_or_create_key(self.key_file)
        except (OSError, ValueError, TypeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not an RSA private key in PEM"
            raise ConfigError(f"JWT_KEY_FILE={self.key_file}: {reason}") from None

    def check_ports(self) -> None:
        """:class:`PortInUse`, naming the setting, for a fixed port something already listens on
        (0 is an ephemeral port, always free)."""
        ports = {
            "PORT": self.port,
            "FALSIM_PORT": 0 if self.fal_key else self.falsim_port,
            "MOTO_PORT": self.moto_port,
            "PLAY_PORT": self.play_port,
        }
        fixed = [(name, port) for name, port in ports.items() if port]
        for i, (name, port) in enumerate(fixed):
            same = [other for other, p in fixed[i + 1 :] if p == port]
            if same:
                raise ConfigError(f"{name}={port} and {same[0]}={port}: each server needs its own port")
        for name, port in fixed:
            with socket.socket() as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
                try:
                    probe.bind((self.host, port))
                except OSError:
                    raise PortInUse(
                        f"{name}={port}: {self.host}:{port} is already in use; free it or set {name}"
                    ) from None


class LocalStack:
    def __init__(self, config: StackConfig | None = None) -> None:
        self.config = config or StackConfig()
        self.template = SamTemplate.load()
        self.public_host = self.config.public_host
        self.authority = LocalAuthority(issuer=f"http://{self.public_host}/local-issuer", key_path=self.config.key_file)
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.moto: Any = None
        self.sim: Any = None
        self.server: Any = None
        self.lambdas: Any = None
        self.push_log: Any = None
        self.resources: Any = None
        self._reconcile_runs = 0
        self._reconcile_totals: dict[str, int] = {}
        self.app_store: Any = None  # the local App Store (devstack/stores/local_store.py)
        self.play: Any = None  # the local Google Play (devstack/stores/google_play.py)

    @property
    def api_url(self) -> str:
        return f"http://{self.public_host}:{self.server.port}"

    @property
    def moto_url(self) -> str:
        return f"http://{self.public_host}:{self.config.moto_port}"

    # --- start / stop -----------------------------------------------------------------------

    def start(self) -> LocalStack:
        from devstack import moto_patches

        moto_patches.apply()
        moto_patches.conflicts_from_env()  # LOCAL_DDB_CONFLICT_RATE / _SEED / _OPS: off unless set
        cfg = self.config
        cfg.check_ports()
        os.environ.update(
            AWS_ACCESS_KEY_ID="local",
            AWS_SECRET_ACCESS_KEY="local",
            AWS_SESSION_TOKEN="local",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_REGION="us-east-1",
        )
        if cfg.moto_port:  # a moto server other processes can reach; else moto is already in-process (tests)
            import logging

            from moto.server import ThreadedMotoServer

            logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log line per AWS call

            os.environ.update(AWS_ENDPOINT_URL=self.moto_url, MOTO_PORT=str(cfg.moto_port))
            self.moto = ThreadedMotoServer(ip_address=cfg.host, port=cfg.moto_port, verbose=False)
            self.moto.start()
            requests.post(f"{self.moto_url}/moto-api/config", json=MOTO_CONFIG, timeout=10).raise_for_status()

        real_fal = bool(cfg.fal_key)
        if not real_fal:
            from devstack.falsim import FalSimulator

            self.sim = FalSimulator(host=cfg.host, port=cfg.falsim_port, seed=cfg.sim_seed)
            self.sim.start()
            if cfg.sim_config:
                self.sim.set_config(**cfg.sim_config)

        self.server = serve(LocalApi([], self._invoke, self.authority), cfg.host, cfg.port)
        api_url = self.api_url
        overrides = self._local_env(api_url, real_fal)
        from devstack.provision import provision

        self.resources = provision(self.template, overrides=overrides)
        os.environ.update(self.resources.env)
        os.environ.update(overrides)
        from videogen import observability, wiring

        wiring.reset()
        observability.keys_per_thread()  # every function in this process: each line under its own name
        observability.quiet_empty_metrics()  # metrics are off here: every output line stays JSON
        from devstack.lambdas import LocalLambdas

        self.lambdas = LocalLambdas(self.template, self.resources)
        self.lambdas.install()
        from devstack import event_targets

        event_targets.apply()  # the template's EventBridgeRule events run their functions here
        event_targets.duplicates_from_env()  # LOCAL_EVENT_DUPLICATE_RATE / _SEED: off unless set
        event_targets.deliver_with(self.lambdas.invoke)
        from devstack.provision import ACCOUNT_ID
        from devstack.push_local import PushLog

        self.push_log = PushLog(self.resources.table_name, os.environ["AWS_DEFAULT_REGION"], ACCOUNT_ID)
        self.push_log.install()
        from devstack import s3_events

        s3_events.deliver_to(self.lambdas)  # S3 ObjectCreated → the upload validator, in-process
        cors = Cors.from_template(self.template, [api_url])  # its own origin, plus any localhost one
        self.server.api = LocalApi(
            self.template.routes(),
            self._invoke,
            self.authority,
            self._local_routes(),
            cors,
            {("PUT", API_PREFIX + CONSUMPTION_PATH): self.app_store.api.consumption},
        )
        self.server.start()
        if cfg.reconcile_every_s > 0:
            self._spawn(self._reconcile_loop, "reconciler")
        self.ready.set()
        return self

    def _local_env(self, api_url: str, real_fal: bool) -> dict[str, str]:
        cfg = self.config
        env = {
            "ENVIRONMENT": "local",
            "TIME_SCALE": str(cfg.time_scale),
            "RECONCILE_GRACE_S": str(cfg.reconcile_grace_s),
            # a completed job's notification waits this long for its poster (20 s deployed)
            "PUSH_POSTER_WAIT_S": os.environ.get("PUSH_POSTER_WAIT_S", "10"),
            "WEBHOOK_TOKEN": secrets.token_urlsafe(24),
            "WEBHOOK_TOKEN_PARAMETER": "",
            "FAL_KEY_PARAMETER": "",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "WARNING"),
            **self._store_env(api_url),
            **cfg.extra_env,
        }
        if real_fal:
            env.update(FAL_KEY=cfg.fal_key, WEBHOOK_BASE_URL=cfg.public_url.rstrip("/"))
        else:
            sim = self.sim.base_url
            env.update(
                FAL_KEY="local-simulator-key",
                FAL_QUEUE_URL=sim,
                FAL_JWKS_URL=f"{sim}/.well-known/jwks.json",
                FAL_WEBHOOK_USER_ID=self.sim.user_id,  # pinned, as in prod (a lost request id needs it)
                WEBHOOK_BASE_URL=api_url,
                MEDIA_ALLOWED_HOSTS=sim.split("://", 1)[1],
                MEDIA_REQUIRE_HTTPS="false",
            )
        return env

    def _store_env(self, api_url: str) -> dict[str, str]:
        """The local App Store: a chain generated now, trusted instead of Apple's roots (only because
        ENVIRONMENT is local), the local app's bundle id and the local packs on sale, and its local
        App Store Server API with the App Store Connect API key it generated (in Secrets Manager,
        as deployed: the store webhook reads it under its own role). The local Google Play: its
        Publisher API and push signer on their own port, keys generated now."""
        import boto3

        from devstack.stores.google_play import LocalPlay
        from devstack.stores.local_store import LocalAppStore

        self.app_store = LocalAppStore.start()
        secretsmanager = boto3.client("secretsmanager", region_name="us-east-1")
        name, value = "videogen-local/app-store-connect-api-key", self.app_store.api.secret()
        try:
            arn = secretsmanager.create_secret(Name=name, SecretString=value)["ARN"]
        except secretsmanager.exceptions.ResourceExistsException:  # a restart on the same moto: this run's key
            arn = secretsmanager.put_secret_value(SecretId=name, SecretString=value)["ARN"]
        self.play = LocalPlay(self.config.host, self.config.play_port, f"{api_url}/webhooks/google-play").start()
        return {**self.app_store.env(api_url, str(arn)), **self.play.env()}

    def _spawn(self, target: Any, name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        if self.server:
            self.server.stop()
        if self.lambdas:
            from devstack import event_targets

            event_targets.deliver_with(None)
            event_targets.drain()
            from devstack import s3_events

            s3_events.stop_delivery()
            self.lambdas.uninstall()
        if self.push_log:
            self.push_log.uninstall()
        if self.sim:
            self.sim.stop()
        if self.play:
            self.play.stop()
        if self.moto:
            self.moto.stop()

    # --- gateway glue ------------------------------------------------------------------------

    def _invoke(self, function: str, event: dict[str, Any]) -> Any:
        return self.lambdas.invoke(function, event)

    def _local_routes(self) -> dict[tuple[str, str], Any]:
        return {
            ("GET", "/_local/health"): lambda _: (200 if self.ready.is_set() else 503, {"ok": self.ready.is_set()}),
            ("POST", "/_local/users"): self._create_user,
            ("GET", "/_local/stats"): lambda _: (200, self.stats()),
            ("GET", "/_local/notifications"): lambda _: (200, {"items": self.push_log.items()}),
            ("POST", "/_local/push/disable"): self._disable_push,
            ("POST", "/_local/store/app-store/transactions"): self._sign_transaction,
            ("POST", "/_local/store/google-play/purchases"): self._play_purchase,
            ("POST", "/_local/store/refunds"): self._store_refund,
            ("GET", "/_local/store/app-store/consumption"): lambda _: (200, {"items": self.app_store.api.items()}),
        }

    def _sign_transaction(self, body: bytes) -> tuple[int, Any]:
        from videogen import wiring

        return self.app_store.sign_transaction(body, wiring.account_token)

    def _play_purchase(self, body: bytes) -> tuple[int, Any]:
        from videogen import wiring

        return self.play.buy(body, wiring.account_token)

    def _store_refund(self, body: bytes) -> tuple[int, Any]:
        """The store's refund notification, sent to the real webhook through the gateway as the store
        sends it: Apple's signed notification, or Play's voided purchase pushed by Pub/Sub."""

        def deliver(method: str, path: str, headers: dict[str, str], payload: bytes) -> tuple[int, Any]:
            status, _, answer = self.server.api.handle(method, path, {"host": self.public_host, **headers}, payload)
            try:
                return status, json.loads(answer)
            except ValueError:
                return status, answer.decode(errors="replace")

        try:
            store = json.loads(body or b"{}").get("store")
        except (ValueError, AttributeError):
            store = None
        if store == "google_play":
            return self.play.refund(body, deliver)
        apple = {"content-type": "application/json", "user-agent": "App Store"}
        return self.app_store.refund(body, lambda m, p, payload: deliver(m, p, apple, payload))

    def _disable_push(self, body: bytes) -> tuple[int, Any]:
        """``{"user_id", "device_id"}``: its SNS endpoint becomes disabled, as when APNs or FCM
        report its token invalid; the next notification finds it so and removes the device."""
        import boto3

        from videogen import wiring

        try:
            target = LocalDevice.from_body(body)
        except ValueError as exc:
            return 400, {"error": f'send {{"user_id": "...", "device_id": "..."}} ({_first_line(exc)})'}
        device = wiring.device_store().get_device(target.user_id, target.device_id)
        if device is None or not device.endpoint_arn:
            return 404, {"error": "no such device with a push endpoint"}
        self.push_log.disable(boto3.client("sns"), device.endpoint_arn)
        return 200, {"disabled": True}

    def _create_user(self, body: bytes) -> tuple[int, Any]:
        from videogen import wiring
        from videogen.domain.errors import DomainError
        from videogen.services.credits import grant_credits

        try:
            user = LocalUser.from_body(body)
        except ValueError as exc:  # pydantic's ValidationError and jsonbody's refusals are ValueErrors
            return 400, {"error": f'send {{"user_id": "...", "credits": N, "grant_id": "..."}} ({_first_line(exc)})'}
        user_id = user.user_id
        try:
            if user.credits:
                grant_credits(
                    wiring.store(),
                    user_id=user_id,
                    credits=user.credits,
                    grant_id=user.grant_id or f"local-{uuid.uuid4().hex}",
                )
        except DomainError as exc:
            return exc.status, {"error": exc.detail}
        return 200, {
            "user_id": user_id,
            "token": self.authority.issue(user_id),
            "balance": wiring.store().get_balance(user_id).balance,
        }

    def stats(self) -> dict[str, Any]:
        from devstack import event_targets, moto_patches
        from videogen import crash

        return {
            "crash_points_fired": dict(crash.fired),
            "conflicts_injected": dict(moto_patches.FAULT.injected),
            "events_duplicated": event_targets.duplicated,  # EventBridge -> Lambda deliveries made twice
            "event_deliveries_in_flight": event_targets.in_flight(),
            "reconcile_runs": self._reconcile_runs,
            "reconcile": dict(self._reconcile_totals),
            "falsim": self.sim.stats() if self.sim else None,
        }

    # --- the schedule --------------------------------------------------------------------------

    def reconcile_once(self) -> dict[str, int]:
        """One scheduled run of the real reconcile handler, with the event EventBridge sends."""
        event = {
            "version": "0",
            "id": uuid.uuid4().hex,
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "resources": [],
            "detail": {},
        }
        result: dict[str, int] = self.lambdas.invoke("ReconcileFunction", event) or {}
        self._reconcile_runs += 1
        for k, v in result.items():
            self._reconcile_totals[k] = self._reconcile_totals.get(k, 0) + int(v)
        return result

    def _reconcile_loop(self) -> None:
        self._reconcile_totals = {}
        while not self._stop.wait(self.config.reconcile_every_s):
            try:
                self.reconcile_once()
            except Exception as exc:  # a failed run is retried by the next one, like the schedule would
                print(f"reconciler run failed: {type(exc).__name__}", flush=True)


# --- in one process, for tests and benchmarks ------------------------------------------------------

_STRIPPED = ("AWS_", "FAL_", "WEBHOOK_", "MEDIA_", "CRASH_", "LOCAL_DDB_", "LOCAL_EVENT_")


@contextmanager
def isolated_env(**values: str) -> Iterator[None]:
    """Run with the AWS/fal/webhook/media/crash/conflict settings of the caller's environment removed and
    ``values`` (plus fake AWS credentials) set; restored afterwards, cached adapters forgotten."""
    from videogen import wiring

    saved = dict(os.environ)
    for key in list(os.environ):
        if key.startswith(_STRIPPED) or key in ("PORT", "TIME_SCALE"):
            del os.environ[key]
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_DISABLED": "true",
            **values,
        }
    )
    wiring.reset()
    try:
        yield
    finally:
        wiring.reset()
        os.environ.clear()
        os.environ.update(saved)


@contextmanager
def in_process(
    *, execute_sfn: bool = False, time_scale: float = 0.01, sim_config: dict[str, Any] | None = None
) -> Iterator[LocalStack]:
    """The whole system in this process: moto ``mock_aws`` (resources from template.yaml; the
    state machine executes only with ``execute_sfn``), the real handlers behind the gateway,
    the fal simulator on an ephemeral port, no reconciler schedule (call ``reconcile_once``)."""
    from moto import mock_aws

    with mock_aws(config={"stepfunctions": {"execute_state_machine": execute_sfn}}):  # type: ignore[arg-type]
        stack = LocalStack(
            StackConfig(
                port=0,
                falsim_port=0,
                moto_port=0,
                play_port=0,
                time_scale=time_scale,
                reconcile_every_s=0,
                reconcile_grace_s=0,
                sim_config=sim_config or {},
            )
        )
        stack.start()
        try:
            yield stack
        finally:
            stack.stop()


def main() -> None:
    try:
        cfg = StackConfig.from_env()
        cfg.check()
    except ConfigError as exc:
        sys.exit(f"videogen local stack not started: {exc}")
    stack = LocalStack(cfg).start()
    fal = (
        "real fal.ai" + (f" (webhooks via {cfg.public_url})" if cfg.public_url else " (poll loop, no webhooks)")
        if cfg.fal_key
        else f"fal simulator at {stack.sim.base_url}"
    )
    print(
        f"videogen local stack ready\n"
        f"  API          {stack.api_url}   (try: curl {stack.api_url}/v1/models)\n"
        f"  fal          {fal}\n"
        f"  AWS (moto)   {stack.moto_url}\n"
        f"  create a user:  curl -s -XPOST {stack.api_url}/_local/users "
        f'-d \'{{"user_id":"alice","credits":100}}\'\n'
        f"  Ctrl-C stops it.",
        flush=True,
    )
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    stack.stop()


if __name__ == "__main__":
    main()
