"""S3 for uploads: the presigned POST an app sends its file with, the ranged reads the upload
check makes (each pinned to the version it started on, If-Match its ETag) and the seal, a
CopyObject with CopySourceIfMatch (implements :class:`videogen.ports.UploadBucket`)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from videogen.domain.errors import MediaTransferError, UploadChanged
from videogen.ports import ObjectHead, PresignedPost

_MISSING = {"404", "NoSuchKey", "NotFound"}
_CHANGED = {"412", "PreconditionFailed"}


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3UploadBucket:
    def __init__(self, s3_client: Any, bucket: str) -> None:
        self._s3 = s3_client
        self._bucket = bucket

    def presign_post(self, key: str, content_type: str, size_bytes: int, ttl_s: int) -> PresignedPost:
        """S3 refuses the POST unless the key, the Content-Type field and the body's length are
        exactly these (the policy's conditions), and after ``ttl_s``. No network call: the policy
        is signed with the function's credentials, and S3 checks the POST against its role."""
        post = self._s3.generate_presigned_post(
            Bucket=self._bucket,
            Key=key,
            Fields={"Content-Type": content_type},
            Conditions=[
                {"Content-Type": content_type},
                ["content-length-range", size_bytes, size_bytes],
            ],
            ExpiresIn=int(ttl_s),
        )
        return PresignedPost(url=str(post["url"]), fields={k: str(v) for k, v in post["fields"].items()})

    def head(self, bucket: str, key: str) -> ObjectHead | None:
        try:
            answer = self._s3.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise MediaTransferError(f"head of upload {key} failed") from exc
        except BotoCoreError as exc:
            raise MediaTransferError(f"head of upload {key} failed") from exc
        return ObjectHead(size=int(answer["ContentLength"]), etag=str(answer["ETag"]))

    def read(self, bucket: str, key: str, offset: int, length: int, etag: str) -> bytes:
        if length <= 0:
            return b""
        try:
            answer = self._s3.get_object(
                Bucket=bucket, Key=key, Range=f"bytes={offset}-{offset + length - 1}", IfMatch=etag
            )
            return bytes(answer["Body"].read())
        except ClientError as exc:
            if _code(exc) == "InvalidRange":  # offset at or past the end
                return b""
            if _code(exc) in _CHANGED | _MISSING:
                raise UploadChanged(key) from None
            raise MediaTransferError(f"read of upload {key} failed") from exc
        except BotoCoreError as exc:
            raise MediaTransferError(f"read of upload {key} failed") from exc

    def seal(self, bucket: str, key: str, etag: str, sealed_key: str) -> bool:
        try:
            self._s3.copy_object(
                Bucket=bucket,
                Key=sealed_key,
                CopySource={"Bucket": bucket, "Key": key},
                CopySourceIfMatch=etag,
                MetadataDirective="COPY",
            )
        except ClientError as exc:
            if _code(exc) in _CHANGED | _MISSING:
                return False
            raise MediaTransferError(f"seal of upload {key} failed") from exc
        except BotoCoreError as exc:
            raise MediaTransferError(f"seal of upload {key} failed") from exc
        return True
