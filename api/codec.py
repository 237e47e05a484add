"""Remote payload codec for operators: the Temporal UI and CLI decode Airlock's payloads here.

``/codec/encode`` and ``/codec/decode`` take the admin token. The Temporal UI cannot send one, so
``/codec/ui/{codec_token}/decode`` carries a separate, decode-only secret in its path; point the UI's
codec endpoint at ``.../codec/ui/<token>``.
"""

from __future__ import annotations

import hmac
import logging
import re
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, status
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads

from airlock.codec import refusal
from api.deps import RuntimeDep
from api.public.security import require_admin

router = APIRouter(prefix="/codec", tags=["codec"])
PayloadsBody = Annotated[dict[str, Any], Body(examples=[{"payloads": [{"metadata": {}, "data": ""}]}])]
_UI_TOKEN = re.compile(r"(/codec/ui/)[^/\s?\"]+")


class HideCodecToken(logging.Filter):
    """The UI's decode URL carries the codec token: an access log shows ``/codec/ui/***/decode``."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "/codec/ui/" in message:
            record.msg, record.args = _UI_TOKEN.sub(r"\1***", message), ()
        return True


def hide_token_in_access_log() -> None:
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, HideCodecToken) for f in access.filters):
        access.addFilter(HideCodecToken())


def _parse(body: dict[str, Any]) -> Payloads:
    try:
        return json_format.ParseDict(body, Payloads())
    except json_format.ParseError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"not a Payloads object: {exc}") from None


async def _run(runtime: Any, body: dict[str, Any], encode: bool) -> dict[str, Any]:
    codec = runtime.settings.codec()
    payloads = list(_parse(body).payloads)
    try:
        result = await (codec.encode(payloads) if encode else codec.decode(payloads))
    except Exception as exc:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, f"cannot encode payloads: {type(exc).__name__}"
        ) from None
    refused = [reason for p in result if (reason := refusal(p))]
    if refused:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"cannot decode payloads: {refused[0]}")
    return json_format.MessageToDict(Payloads(payloads=result))


_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "not a Payloads object, or payloads this key cannot decode"},
    401: {"description": "missing or invalid API token"},
}


@router.post("/encode", dependencies=[Depends(require_admin)], responses=_RESPONSES)
async def encode(body: PayloadsBody, runtime: RuntimeDep) -> dict[str, Any]:
    return await _run(runtime, body, encode=True)


@router.post("/decode", dependencies=[Depends(require_admin)], responses=_RESPONSES)
async def decode(body: PayloadsBody, runtime: RuntimeDep) -> dict[str, Any]:
    return await _run(runtime, body, encode=False)


@router.post("/ui/{codec_token}/decode", include_in_schema=False)
async def decode_for_ui(codec_token: str, body: PayloadsBody, runtime: RuntimeDep) -> dict[str, Any]:
    expected = runtime.settings.codec_token
    if not expected or not hmac.compare_digest(codec_token.encode(), expected.encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid codec token")
    return await _run(runtime, body, encode=False)
