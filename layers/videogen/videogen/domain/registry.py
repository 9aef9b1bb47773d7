"""The model registry: the reviewed list of video models this product sells.

One entry per model: the fal endpoint id, the pydantic input model (its JSON
Schema is what ``GET /v1/models`` publishes and what ``POST /v1/videos``
validates against), the credit price (which may depend on the inputs), and
the expected and maximum generation time that drive the poll loop.

Changing a price or adding a model is a code review of this file.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    HttpUrl,
    PlainSerializer,
    RootModel,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    create_model,
)

from videogen.domain.errors import ModelNotFound, shown
from videogen.domain.errors import ValidationFailed as ValidationFailedError
from videogen.domain.uploads import UPLOAD_REF, MediaKind, upload_id_of

# At least one character that no engine counts as white space (the models strip it first), so
# the published schema says exactly what is accepted: a prompt of only blanks is refused.
NOT_BLANK = r"[^\t\n\x0b\x0c\r \x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"
Prompt = Field(min_length=1, max_length=2500, pattern=NOT_BLANK, description="What the video should show")
NegativePrompt = Field(None, max_length=2500)


def _integral(value: Any) -> Any:
    """JSON Schema's integer is any number with a zero fractional part: ``4.0`` is one, ``"4"`` and
    ``true`` are not. Strict pydantic refuses a float, so an integral one is taken as the int."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _any_case(word: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in word)


# A plain URL input (fal fetches it, we never do): ``https``, no user info, a host NAME — never an
# IP literal in any form (``[::1]``, ``127.0.0.1``, and the decimal/octal/hex forms a URL parser
# reads as IPv4, e.g. ``2130706433`` or ``0x7f.1``: a host whose last label starts with a letter is
# never read as an address), and no ``localhost``-like or internal name. ONE regular expression
# is both the published schema's ``pattern`` (beside ``format: uri``) and the validator's check,
# so the two cannot disagree; ``(?![\s\S])`` is the end of the text in Python and ECMA-262 alike.
_LABEL = r"(?:[A-Za-z0-9_-]|[^\x00-\x7f])"  # a host label's characters (non-ASCII: an IDN)
_INTERNAL = "|".join(_any_case(w) for w in ("localhost", "local", "internal", "arpa"))
_PORT = r"0*(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}|0)"
# after the host: what a strict URL parser takes (URL code points, %-escapes), one fragment at most
_CODE_POINT = r"(?:[A-Za-z0-9!$&'()*+,\-./:;=?@_~]|[^\x00-\x7f\ufdd0-\ufdef\ufffe\uffff]|%[0-9A-Fa-f]{2})"
_END = r"(?![\s\S])"
PUBLIC_HTTPS = (
    rf"^{_any_case('https')}://(?:{_LABEL}+\.)+(?!(?:{_INTERNAL})\.?(?:[:/?#]|{_END}))[A-Za-z]{_LABEL}*\.?"
    rf"(?::{_PORT})?(?:[/?]{_CODE_POINT}*)?(?:#{_CODE_POINT}*)?{_END}"
)
_PUBLIC_HTTPS = re.compile(PUBLIC_HTTPS)
# A URL input: a public https URL, or ``upload:<id>`` (the caller's upload, resolved at submit).
URL_INPUT = rf"^(?:{UPLOAD_REF}{_END}|{PUBLIC_HTTPS[1:]})"
URL_RULE = "must be a public https URL (no user info, no IP address, no localhost or internal host name) or upload:<id>"


def _public_https(value: Any) -> Any:
    if isinstance(value, str) and not _PUBLIC_HTTPS.search(value):
        raise ValueError(URL_RULE)
    return value  # not a string: the URL type refuses it


def _host_name(url: HttpUrl) -> HttpUrl:
    """After parsing, again on the parsed URL: no user info, no address (a second look, in case
    the parser's normalisation made an address out of what the pattern took for a name)."""
    host = (url.host or "").strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not (url.username or url.password) and url.scheme == "https":
            return url
    raise ValueError(URL_RULE)


def _url_or_upload(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """``upload:<id>`` stays as sent (the job shows it so; submit checks the upload, SubmitToFal
    hands fal a presigned GET of it); anything else must be a public https URL, and is kept as
    sent too: the parser's normal form may be longer than the 2083 characters checked (an IDN
    host's punycode, a path's %-escapes), so what is stored, priced again and sent to fal is
    exactly what was validated."""
    if upload_id_of(value) is not None:
        return value
    handler(value)
    return value


Url = Annotated[
    HttpUrl,
    BeforeValidator(_public_https),
    AfterValidator(_host_name),
    WrapValidator(_url_or_upload),
    PlainSerializer(str, return_type=str),  # a parsed URL or an upload:<id> as sent: text either way
    Field(json_schema_extra={"pattern": URL_INPUT}),
]
# Which kind of upload a URL field takes: the one home of "image fields take images, video fields
# videos" (:func:`upload_fields` reads it).
ImageUrl = Annotated[Url, MediaKind.IMAGE]
VideoUrl = Annotated[Url, MediaKind.VIDEO]


def _kind_of(annotation: Any) -> MediaKind | None:
    for meta in getattr(annotation, "__metadata__", ()):
        if isinstance(meta, MediaKind):
            return meta
    for arg in get_args(annotation) if get_origin(annotation) is not None else ():
        found = _kind_of(arg)
        if found is not None:
            return found
    return None


def upload_fields(model: type[BaseModel]) -> dict[str, MediaKind]:
    """Each URL field of an input model and the kind of upload it takes."""
    out = {}
    for name, info in model.model_fields.items():
        kind = _kind_of(info.annotation)
        if kind is None:
            kind = next((m for m in info.metadata if isinstance(m, MediaKind)), None)
        if kind is not None:
            out[name] = kind
    return out


def upload_refs(parsed: BaseModel) -> dict[str, tuple[str, MediaKind]]:
    """field -> (upload id, kind taken) for every ``upload:<id>`` input of a validated input."""
    refs = {}
    for name, kind in upload_fields(type(parsed)).items():
        upload_id = upload_id_of(getattr(parsed, name))
        if upload_id is not None:
            refs[name] = (upload_id, kind)
    return refs


# On every int field, after its constraints (so the published schema keeps them as JSON Schema's).
INTEGRAL = BeforeValidator(_integral)


class ModelInput(BaseModel):
    """Strict: a value is accepted exactly when the published JSON Schema accepts it. No string is
    an integer or a boolean, no number a boolean, no boolean a number; an integer is a number (as in
    JSON Schema). Strings are stripped: the schema's pattern asks for a non-blank character."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, strict=True)


class Kling21StandardI2V(ModelInput):
    prompt: str = Prompt
    image_url: ImageUrl
    duration: Literal["5", "10"] = "5"
    negative_prompt: str | None = NegativePrompt
    cfg_scale: float | None = Field(None, ge=0, le=1)


class Kling26ProI2V(ModelInput):
    prompt: str = Prompt
    start_image_url: ImageUrl
    end_image_url: ImageUrl | None = None
    duration: Literal["5", "10"] = "5"
    generate_audio: bool = True
    negative_prompt: str | None = NegativePrompt


class Kling26MotionControl(ModelInput):
    image_url: ImageUrl
    video_url: VideoUrl
    character_orientation: Literal["image", "video"]
    prompt: str | None = Field(None, max_length=2500)
    keep_original_sound: bool = True


class MinimaxVideo01(ModelInput):
    prompt: str = Prompt
    prompt_optimizer: bool = True


class Veo31I2V(ModelInput):
    prompt: str = Prompt
    image_url: ImageUrl
    aspect_ratio: Literal["auto", "16:9", "9:16"] = "auto"
    duration: Literal["4s", "6s", "8s"] = "8s"
    resolution: Literal["720p", "1080p", "4k"] = "720p"
    generate_audio: bool = True
    negative_prompt: str | None = NegativePrompt
    seed: Annotated[int, Field(ge=0, le=2**32 - 1), INTEGRAL] | None = None


class Sora2I2V(ModelInput):
    prompt: str = Prompt
    image_url: ImageUrl
    resolution: Literal["auto", "720p"] = "auto"
    aspect_ratio: Literal["auto", "16:9", "9:16"] = "auto"
    duration: Annotated[int, Field(ge=4, le=20), INTEGRAL] = 4


@dataclass(frozen=True)
class ModelSpec:
    id: str
    name: str
    fal_endpoint: str
    input_model: type[ModelInput]
    price: Callable[[Any], int]
    expected_s: int  # typical time from submit to result: the first poll waits this long
    max_s: int  # queue + generation deadline: then cancel at fal, fail and refund

    def parse_input(self, raw: Any) -> ModelInput:
        if not isinstance(raw, dict):
            raise ValidationFailedError([{"loc": "input", "msg": "input must be an object"}])
        try:
            return self.input_model.model_validate(raw)
        except ValidationError as exc:
            errors = [  # a loc may hold an unknown key the user sent: each part is cut short
                {"loc": ".".join(["input", *(shown(p, quote=False) for p in e["loc"])]), "msg": e["msg"]}
                for e in exc.errors(include_url=False)
            ]
            raise ValidationFailedError(errors) from None

    def credits(self, parsed: ModelInput) -> int:
        return int(self.price(parsed))

    def input_schema(self) -> dict[str, Any]:
        return self.input_model.model_json_schema()

    @property
    def default_credits(self) -> int:
        """The price with default inputs (what GET /v1/models shows as the base price)."""
        fields = self.input_model.model_fields
        sample = {
            name: ("https://example.com/a.png" if "url" in name else "x")
            for name, f in fields.items()
            if f.is_required()
        }
        if "character_orientation" in sample:
            sample["character_orientation"] = "image"
        return self.credits(self.input_model.model_validate(sample))


def _veo_price(i: Veo31I2V) -> int:
    per_second = {"720p": 2, "1080p": 3, "4k": 6}[i.resolution]
    base = per_second * int(i.duration.rstrip("s"))
    return math.ceil(base * 1.5) if i.generate_audio else base


_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        id="kling-2.1-standard-i2v",
        name="Kling 2.1 Standard (image to video)",
        fal_endpoint="fal-ai/kling-video/v2.1/standard/image-to-video",
        input_model=Kling21StandardI2V,
        price=lambda i: 4 * (int(i.duration) // 5),
        expected_s=120,
        max_s=1800,
    ),
    ModelSpec(
        id="kling-2.6-pro-i2v",
        name="Kling 2.6 Pro (image to video)",
        fal_endpoint="fal-ai/kling-video/v2.6/pro/image-to-video",
        input_model=Kling26ProI2V,
        price=lambda i: (7 if i.generate_audio else 5) * (int(i.duration) // 5),
        expected_s=150,
        max_s=1800,
    ),
    ModelSpec(
        id="kling-2.6-standard-motion-control",
        name="Kling 2.6 Standard motion control",
        fal_endpoint="fal-ai/kling-video/v2.6/standard/motion-control",
        input_model=Kling26MotionControl,
        price=lambda i: 6,
        expected_s=150,
        max_s=1800,
    ),
    ModelSpec(
        id="minimax-video-01",
        name="MiniMax Video-01 (text to video)",
        fal_endpoint="fal-ai/minimax/video-01",
        input_model=MinimaxVideo01,
        price=lambda i: 5,
        expected_s=180,
        max_s=1800,
    ),
    ModelSpec(
        id="veo-3.1-i2v",
        name="Veo 3.1 (image to video)",
        fal_endpoint="fal-ai/veo3.1/image-to-video",
        input_model=Veo31I2V,
        price=_veo_price,
        expected_s=90,
        max_s=1200,
    ),
    ModelSpec(
        id="sora-2-i2v",
        name="Sora 2 (image to video)",
        fal_endpoint="fal-ai/sora-2/image-to-video",
        input_model=Sora2I2V,
        price=lambda i: 2 * i.duration,
        expected_s=180,
        max_s=1800,
    ),
)


def _request_model(spec: ModelSpec) -> type[BaseModel]:
    """The submit body for one model: its id and ITS input model (the one schema)."""
    return create_model(
        f"{spec.input_model.__name__}Request",
        __config__=ConfigDict(extra="forbid", title=f"{spec.name} request"),
        model=(Literal[spec.id], ...),
        input=(spec.input_model, ...),
    )


_ANY_REQUEST: Any = Annotated[Union[tuple(_request_model(m) for m in _MODELS)], Field(discriminator="model")]  # noqa: UP007


class VideoRequest(RootModel[_ANY_REQUEST]):
    """The body of POST /v1/videos: ``{"model", "input"}``, ``input`` as the chosen model's schema.
    A model taken off sale still appears here; a new request for it answers 404 model_not_found."""


class Registry:
    """The models on sale: all of ``_MODELS`` minus the ones disabled by configuration."""

    def __init__(self, models: tuple[ModelSpec, ...] = _MODELS, disabled: frozenset[str] = frozenset()) -> None:
        self._all = {m.id: m for m in models}
        self._models = {k: m for k, m in self._all.items() if k not in disabled}

    def get(self, model_id: object) -> ModelSpec:
        """A model on sale (what new jobs may use)."""
        if not isinstance(model_id, str) or model_id not in self._models:
            raise ModelNotFound(f"Unknown model {shown(model_id)}; GET /v1/models lists the available ones")
        return self._models[model_id]

    def for_job(self, model_id: str) -> ModelSpec:
        """The model of an accepted job: still served after it was taken off sale."""
        if model_id not in self._all:
            raise ModelNotFound(f"Unknown model {shown(model_id)}")
        return self._all[model_id]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._models.values())
