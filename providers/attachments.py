"""Images attached to a user message: read, recognised, checked against each protocol's limits,
and put into each protocol's own request form.

An image is recognised by its first bytes, never by its file name, and its width and height
are read from its header (no image library). The limits are each provider's documented ones,
checked before anything is sent, so a refusal is a clear sentence instead of a 400 from the
server after the request's overhead.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from providers.capabilities import capabilities
from providers.config import Config
from providers.model_ref import ModelRef

KIND_NAMES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WebP", "image/gif": "GIF"}
# Above every provider's limit: a bigger file is refused before it is read into memory.
MAX_READ_BYTES = 64 * 1024 * 1024


class ImageError(ValueError):
    """A file that cannot be attached as an image, with the reason in the user's words."""


@dataclass(frozen=True, slots=True)
class Image:
    """One attached image: its bytes, what they are, and where they came from."""

    name: str  # the file's name as the user gave it (shown, never trusted)
    mime: str  # from the bytes: image/png, image/jpeg, image/webp or image/gif
    data: bytes
    width: int
    height: int

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def b64(self) -> str:
        """The bytes in standard base64, as every protocol sends them."""
        return base64.b64encode(self.data).decode("ascii")

    def b64_size(self) -> int:
        """Characters of the base64 form (what request-size limits count)."""
        return 4 * ((self.size + 2) // 3)

    def describe(self) -> str:
        """``cat.png · PNG · 12.3 KB · 640×480``: what the message shows."""
        kind = KIND_NAMES.get(self.mime, self.mime)
        return f"{self.name} · {kind} · {human_bytes(self.size)} · {self.width}×{self.height}"


def human_bytes(n: int) -> str:
    """``812 B``, ``12.3 KB``, ``4.1 MB`` (powers of 1024, as the providers' limits are)."""
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n / (1024 * 1024):.1f} MB"


# --- recognising an image ----------------------------------------------------------------------

_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def sniff(data: bytes) -> tuple[str, int, int]:
    """The MIME type, width and height of an image from its bytes; raises ``ImageError``."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise ImageError("is a PNG whose header is cut short")
        w, h = struct.unpack(">II", data[16:24])
        return "image/png", w, h
    if data[:6] in (b"GIF87a", b"GIF89a"):
        if len(data) < 10:
            raise ImageError("is a GIF whose header is cut short")
        w, h = struct.unpack("<HH", data[6:10])
        return "image/gif", w, h
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp", *_webp_size(data)
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg", *_jpeg_size(data)
    raise ImageError("is not a PNG, JPEG, WebP or GIF image (judged by its first bytes)")


def gif_frames(data: bytes, stop_at: int = 2) -> int:
    """How many frames a GIF holds (counted up to ``stop_at``): OpenAI takes only still GIFs."""
    if len(data) < 13 or data[:6] not in (b"GIF87a", b"GIF89a"):
        return 0
    i = 13
    if data[10] & 0x80:  # a global colour table
        i += 3 << ((data[10] & 7) + 1)
    frames = 0
    while i < len(data) and frames < stop_at:
        block = data[i]
        if block == 0x3B:  # trailer
            break
        if block == 0x21:  # an extension: label, then sub-blocks
            i += 2
        elif block == 0x2C:  # an image: descriptor, local colour table, LZW size, sub-blocks
            frames += 1
            if i + 10 > len(data):
                break
            flags = data[i + 9]
            i += 10 + ((3 << ((flags & 7) + 1)) if flags & 0x80 else 0) + 1
        else:
            break
        while i < len(data) and data[i] != 0:  # sub-blocks, each led by its length
            i += data[i] + 1
        i += 1
    return frames


def _webp_size(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:  # extended: 24-bit canvas width-1, height-1
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":  # lossy
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:  # lossless: 14 + 14 bits
        bits = int.from_bytes(data[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    raise ImageError("is a WebP whose header this reader does not understand")


def _jpeg_size(data: bytes) -> tuple[int, int]:
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise ImageError("is a JPEG whose segments do not parse")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD9)):  # markers without a length
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in _JPEG_SOF:
            if i + 9 > len(data):
                break
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return w, h
        if marker == 0xDA or length < 2:  # image data before any frame header: give up
            break
        i += 2 + length
    raise ImageError("is a JPEG without a readable frame header (no width and height)")


def image_from_bytes(name: str, data: bytes) -> Image:
    """An ``Image`` from bytes; raises ``ImageError`` naming ``name``."""
    try:
        mime, w, h = sniff(data)
    except ImageError as exc:
        raise ImageError(f"{name} {exc}") from None
    if w <= 0 or h <= 0:
        raise ImageError(f"{name} says it is {w}×{h} pixels")
    return Image(name=name, mime=mime, data=data, width=w, height=h)


def load_image(path: str | Path) -> Image:
    """Read the image at ``path``; raises ``ImageError`` with a sentence for the user."""
    p = Path(path).expanduser()
    try:
        st = p.stat()
    except OSError as exc:
        raise ImageError(f"{p}: {exc.strerror or exc}") from None
    if not p.is_file():
        raise ImageError(f"{p} is not a file")
    if st.st_size > MAX_READ_BYTES:
        raise ImageError(
            f"{p.name} is {human_bytes(st.st_size)}; no provider takes an image over 50 MB"
        )
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ImageError(f"{p}: {exc.strerror or exc}") from None
    return image_from_bytes(p.name, data)


# --- each provider's documented limits ---------------------------------------------------------

MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ImageLimits:
    """What one protocol's provider documents for images in one request."""

    provider: str
    types: frozenset[str]
    max_count: int
    max_image_b64: int | None = None  # per image, counted in base64 characters
    max_total_bytes: int | None = None  # all images' bytes in one request
    max_total_b64: int | None = None  # all images' base64 in one request (inline data)
    max_side: int | None = None
    still_gif_only: bool = False  # an animated GIF is refused
    source: str = ""


_ALL = frozenset(KIND_NAMES)
LIMITS: dict[str, ImageLimits] = {
    # https://platform.openai.com/docs/guides/images-vision ("Image input requirements"):
    # PNG, JPEG, WEBP, non-animated GIF; up to 500 images and 50 MB of image bytes a request.
    "chat": ImageLimits(
        "OpenAI", _ALL, 500, max_total_bytes=50 * MB, still_gif_only=True,
        source="https://platform.openai.com/docs/guides/images-vision",
    ),
    "responses": ImageLimits(
        "OpenAI", _ALL, 500, max_total_bytes=50 * MB, still_gif_only=True,
        source="https://platform.openai.com/docs/guides/images-vision",
    ),
    # https://platform.claude.com/docs/en/build-with-claude/vision: JPEG, PNG, GIF, WebP; 100
    # images a request (200k-context models), 5 MB each (the API counts the base64 string),
    # 8000×8000 px at most (2000×2000 with more than 20 images), 32 MB a request.
    "anthropic": ImageLimits(
        "Anthropic", _ALL, 100, max_image_b64=5 * MB, max_total_b64=32 * MB, max_side=8000,
        source="https://platform.claude.com/docs/en/build-with-claude/vision",
    ),
    # https://ai.google.dev/gemini-api/docs/image-understanding: PNG, JPEG, WEBP, HEIC, HEIF
    # (no GIF); inline data only while the whole request stays under 20 MB; 3,600 images.
    "gemini": ImageLimits(
        "Google Gemini", frozenset({"image/png", "image/jpeg", "image/webp"}), 3600,
        max_total_b64=20 * MB,
        source="https://ai.google.dev/gemini-api/docs/image-understanding",
    ),
}  # fmt: skip
# The OpenAI-compatible endpoints of Anthropic and Google speak chat completions to the same
# models: their own provider's limits apply.
LIMITS_BY_ENDPOINT = {"anthropic-openai": LIMITS["anthropic"], "gemini-openai": LIMITS["gemini"]}


def images_of(messages: Iterable[Mapping[str, Any]]) -> list[Image]:
    """Every image the messages carry, oldest first (the whole history is sent each time)."""
    return [img for m in messages for img in m.get("images") or ()]


def refusal_for(
    config: Config, model_ref: str, messages: Sequence[Mapping[str, Any]]
) -> str | None:
    """Why ``model_ref`` (``endpoint/model``) cannot be sent these messages' images, or None.

    Text-only models are those the capability table marks, and every model tokenrace serves
    itself (``local``: a llama.cpp server started without a vision projector)."""
    if not any(m.get("images") for m in messages):
        return None
    try:
        ref = ModelRef.parse(model_ref)
        name, model = ref.endpoint, ref.model
        ep = config.endpoint(name)
    except (KeyError, ValueError):
        return None  # the engine reports the unknown endpoint itself
    takes = capabilities(ep.name, model).images and not ep.managed
    return refusal(ep.protocol, model_ref, takes, messages, LIMITS_BY_ENDPOINT.get(ep.name))


def refusal(
    protocol: str,
    model_ref: str,
    takes_images: bool,
    messages: Sequence[Mapping[str, Any]],
    limits: ImageLimits | None = None,
) -> str | None:
    """Why ``model_ref`` cannot be sent these messages' images, or None when it can
    (``limits``: the protocol's unless given)."""
    images = images_of(messages)
    if not images:
        return None
    n = len(images)
    if not takes_images:
        return (
            f"{model_ref} takes no images, and this conversation has {n} attached: "
            "choose a model that sees images (F2), or start a new conversation (Ctrl+N)"
        )
    lim = limits or LIMITS.get(protocol)
    if lim is None:
        return None
    why = f"({lim.provider}'s limit, {lim.source})"
    if n > lim.max_count:
        return f"{n} images in one request: {model_ref} takes at most {lim.max_count} {why}"
    for img in images:
        if img.mime not in lim.types:
            kinds = ", ".join(sorted(KIND_NAMES[t] for t in lim.types))
            return f"{img.name} is a {KIND_NAMES[img.mime]} image: {model_ref} takes {kinds} {why}"
        if lim.still_gif_only and img.mime == "image/gif" and gif_frames(img.data) > 1:
            return f"{img.name} is an animated GIF: {model_ref} takes still GIFs only {why}"
        if lim.max_image_b64 is not None and img.b64_size() > lim.max_image_b64:
            return (
                f"{img.name} is {human_bytes(img.size)} ({human_bytes(img.b64_size())} as "
                f"base64): {model_ref} takes {human_bytes(lim.max_image_b64)} per image {why}"
            )
        if lim.max_side is not None:
            side = lim.max_side if n <= 20 else 2000
            if max(img.width, img.height) > side:
                return (
                    f"{img.name} is {img.width}×{img.height} px: {model_ref} takes at most "
                    f"{side}×{side} px{' with more than 20 images' if n > 20 else ''} {why}"
                )
    total = sum(i.size for i in images)
    if lim.max_total_bytes is not None and total > lim.max_total_bytes:
        return (
            f"the images come to {human_bytes(total)}: {model_ref} takes "
            f"{human_bytes(lim.max_total_bytes)} of images per request {why}"
        )
    total_b64 = sum(i.b64_size() for i in images)
    if lim.max_total_b64 is not None and total_b64 > lim.max_total_b64:
        return (
            f"the images come to {human_bytes(total_b64)} as base64: {model_ref} takes "
            f"{human_bytes(lim.max_total_b64)} per request {why}"
        )
    return None


# --- each protocol's own form ------------------------------------------------------------------


def image_part(protocol: str, img: Image) -> dict[str, Any]:
    """One image as ``protocol`` sends it, in the form of its provider's documented example."""
    if protocol == "anthropic":
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": img.mime, "data": img.b64()},
        }
    if protocol == "gemini":
        # The API reference's JSON names (Part.inlineData, Blob.mimeType), as the rest of our
        # Gemini body (systemInstruction, generationConfig) uses.
        return {"inlineData": {"mimeType": img.mime, "data": img.b64()}}
    url = f"data:{img.mime};base64,{img.b64()}"
    if protocol == "responses":
        return {"type": "input_image", "image_url": url}
    return {"type": "image_url", "image_url": {"url": url}}


def wire_content(protocol: str, message: Mapping[str, Any], text: Any) -> Any:
    """A message's content with its images, or ``text`` alone (a plain string) when it has none.

    Order follows each provider's example: OpenAI's put the text first, Anthropic's and
    Gemini's put the image first (Anthropic's guide says images before text work best).
    """
    images = message.get("images") or ()
    if not images:
        return text
    parts = [image_part(protocol, img) for img in images]
    if protocol == "anthropic":
        return [*parts, {"type": "text", "text": text}] if text else parts
    if protocol == "gemini":
        return [*parts, {"text": text}] if text else parts
    kind = "input_text" if protocol == "responses" else "text"
    return [{"type": kind, "text": text}, *parts] if text else parts
