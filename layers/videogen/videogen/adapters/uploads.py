"""S3 for uploads: the presigned POST an app sends its file with, and the ranged reads the
upload check makes (implements :class:`videogen.ports.UploadBucket`)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from videogen.domain.errors import MediaTransferError
from videogen.ports import PresignedPost


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

    def size(self, bucket: str, key: str) -> int | None:
        try:
            answer = self._s3.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise MediaTransferError(f"head of upload {key} failed") from exc
        except BotoCoreError as exc:
            raise MediaTransferError(f"head of upload {key} failed") from exc
        return int(answer["ContentLength"])

    def read(self, bucket: str, key: str, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        try:
            answer = self._s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={offset}-{offset + length - 1}")
            return bytes(answer["Body"].read())
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "InvalidRange":  # offset at or past the end
                return b""
            raise MediaTransferError(f"read of upload {key} failed") from exc
        except BotoCoreError as exc:
            raise MediaTransferError(f"read of upload {key} failed") from exc
