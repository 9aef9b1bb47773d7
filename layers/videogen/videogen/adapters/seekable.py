"""The one read-only, seekable raw file of a known length that the adapters build on."""

from __future__ import annotations

import io
from collections import OrderedDict
from typing import Any


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


class BlockReader(SeekableReader):
    """A :class:`SeekableReader` read in blocks of ``block_bytes`` (a subclass fetches one with
    :meth:`_fetch`), keeping the last ``cache_blocks`` of them. ``size`` is set by the subclass."""

    def __init__(self, block_bytes: int, cache_blocks: int) -> None:
        super().__init__()
        if block_bytes <= 0 or cache_blocks <= 0:
            raise ValueError("block_bytes and cache_blocks must be > 0")
        self._block = block_bytes
        self._cache_blocks = cache_blocks
        self._blocks: OrderedDict[int, bytes] = OrderedDict()
        self.size = 0

    def _fetch(self, start: int, end: int) -> bytes:
        """The bytes ``start`` to ``end`` (exclusive)."""
        raise NotImplementedError

    def _remember(self, index: int, data: bytes) -> None:
        self._blocks[index] = data
        self._blocks.move_to_end(index)
        while len(self._blocks) > self._cache_blocks:
            self._blocks.popitem(last=False)

    def _block_at(self, index: int) -> bytes:
        if index in self._blocks:
            self._blocks.move_to_end(index)
            return self._blocks[index]
        start = index * self._block
        data = self._fetch(start, min(self.size, start + self._block))
        self._remember(index, data)
        return data

    def __len__(self) -> int:
        return self.size

    def readinto(self, target: Any) -> int:
        if self._pos >= self.size:
            return 0
        index, offset = divmod(self._pos, self._block)
        block = self._block_at(index)
        n = min(len(target), len(block) - offset)
        if n <= 0:  # the source served less than it holds
            return 0
        target[:n] = block[offset : offset + n]
        self._pos += n
        return n
