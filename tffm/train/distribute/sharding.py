"""Each worker's part of the training files: whole files, or every N-th line."""

import os
from collections.abc import Sequence

# Whole files go to workers when the heaviest worker's bytes are at most
# this much over the lightest's (else every N-th line: see `shard_files`).
FILE_IMBALANCE = 0.1


def shard_files(
    files: Sequence[str], count: int, index: int
) -> tuple[list[str], tuple[int, int] | None]:
    """Worker `index` of `count`'s input: `(files, record_shard)`.

    Whole files when they split evenly: dealt largest first, each to the
    worker with the fewest bytes so far, as long as the heaviest worker
    then has at most `FILE_IMBALANCE` (10%) more bytes than the lightest
    (each worker reads only its files). Otherwise (fewer files than
    workers, or sizes that do not balance) every worker reads every file
    and keeps every `count`-th line from the `index`-th. Either way each
    line goes to exactly one worker.

    Why balance: synchronous workers take a step together, so a worker
    whose input ends first trains on empty batches (`fill_empty_batches`)
    while the others finish theirs: its replicas add nothing to those
    steps, and the tail of the epoch runs at `1 / count` of the rows.
    Every `count`-th line leaves the workers at most one batch apart.
    """
    files = list(files)
    if count == 1:
        return files, None
    if len(files) >= count:
        dealt = _deal_by_size(files, count)
        if dealt is not None:
            return dealt[index], None
    return files, (count, index)


def _deal_by_size(files: list[str], count: int) -> list[list[str]] | None:
    """`count` lists of `files` with even bytes, or None if they are not."""
    sizes = [_size(f) for f in files]
    if None in sizes:  # not local files (e.g. gs://): keep the file order
        return [files[i::count] for i in range(count)]
    loads = [0] * count
    dealt: list[list[str]] = [[] for _ in range(count)]
    # Largest first (ties by name), each to the lightest worker so far.
    for size, path in sorted(zip(sizes, files, strict=True), key=_by_size):
        lightest = loads.index(min(loads))
        loads[lightest] += int(size or 0)
        dealt[lightest].append(path)
    if max(loads) > (1 + FILE_IMBALANCE) * min(loads):
        return None
    order = {path: i for i, path in enumerate(files)}
    return [sorted(paths, key=order.__getitem__) for paths in dealt]


def _by_size(item: tuple[int | None, str]) -> tuple[int, str]:
    return -int(item[0] or 0), item[1]


def _size(path: str) -> int | None:
    try:
        return os.path.getsize(path)
    except OSError:
        return None
