"""The one read-only, seekable raw file of a known length that the adapters build on."""

from __future__ import annotations

import io


class SeekableReader(io.RawIOBase):
    """Readable and seekable over ``len(self)`` bytes; a subclass gives ``__len__`` and
    ``readinto`` (from ``self._pos``, which it moves)."""

    def __init__(self) -> None:
        super().__init__()
        self._pos = 0

    def __len__(self) -> int:
        raise NotImplementedError

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self)}[whence]
        self._pos = max(0, base + offset)
        return self._pos
