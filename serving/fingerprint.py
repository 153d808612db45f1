"""FarmHash `Fingerprint64` of whole string columns, vectorized in numpy.

TensorFlow's `to_hash_bucket_fast` buckets `Fingerprint64(value)`, which is
`farmhashna::Hash64` over the value's UTF-8 bytes. `pyfarmhash` computes it
one Python call per string (about 80 ns each, plus the loop); this module
computes it for a whole column at once: the strings are joined into one
UTF-8 buffer (one C call), their boundaries found with numpy, and every
length class of `Hash64` (0, 1-3, 4-7, 8-16, 17-32, 33-64 and over 64 bytes)
evaluated on all the strings of that class together, with 64-bit words read
through an unaligned strided view of the buffer. Results equal
`farmhash.fingerprint64` bit for bit (checked in the tests on random
strings of every length class, ASCII and not).

Below `SCALAR_THRESHOLD` strings the per-string C function is faster than
numpy's per-call overhead, so small batches use it (same values).
"""

from collections.abc import Sequence

import numpy as np

# Below this many strings, one C call per string beats ~60 numpy calls.
SCALAR_THRESHOLD = 96

_K0 = np.uint64(0xC3A5C85C97CB3127)
_K1 = np.uint64(0xB492B66FBE98F273)
_K2 = np.uint64(0x9AE16A3B2F90404F)
_SEED = 81
_MASK64 = (1 << 64) - 1
_CHUNK = 4096


def fingerprint64(values: np.ndarray | Sequence[str]) -> np.ndarray:
    """FarmHash Fingerprint64 of each string, as int64 bits.

    Args:
        values: strings (`str`): an object or `U` array of any shape, or
            a flat list.

    Returns:
        int64 array of `values`' shape (the uint64 fingerprints' bits).
    """
    if isinstance(values, list):  # flat list: no copy
        flat, shape = values, (len(values),)
    else:
        array = np.asarray(values, dtype=object)
        flat, shape = array.reshape(-1).tolist(), array.shape
    if len(flat) < SCALAR_THRESHOLD:
        return _scalar(flat).reshape(shape)
    return fingerprint64_flat(flat).reshape(shape)


def fingerprint64_flat(strings: list[str]) -> np.ndarray:
    """`fingerprint64` of a flat list of `str`, vectorized; int64 `(n,)`."""
    out = np.empty(len(strings), np.int64)
    # Chunks keep every temporary under glibc's mmap threshold (128 KiB):
    # larger ones are mapped, faulted in and unmapped by every numpy
    # operation, which costs more than the arithmetic.
    for first in range(0, len(strings), _CHUNK):
        chunk = strings[first : first + _CHUNK]
        out[first : first + len(chunk)] = _fingerprint_chunk(chunk)
    return out


def _fingerprint_chunk(strings: list[str]) -> np.ndarray:
    n = len(strings)
    try:
        data = "\0".join(strings).encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: let pyfarmhash raise
        return _scalar(strings)
    buffer = np.frombuffer(data, np.uint8)
    separators = np.flatnonzero(buffer == 0)
    if len(separators) != n - 1:  # some string holds "\0": split per string
        encoded = [s.encode("utf-8") for s in strings]
        buffer = np.frombuffer(b"".join(encoded), np.uint8)
        lengths = np.fromiter(map(len, encoded), np.int64, n)
        starts = np.zeros(n, np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
    else:
        starts = np.empty(n, np.int64)
        starts[0] = 0
        starts[1:] = separators + 1
        ends = np.empty(n, np.int64)
        ends[:-1] = separators
        ends[-1] = len(buffer)
        lengths = ends - starts
    return hash_buffer(buffer, starts, lengths)


def hash_buffer(
    buffer: np.ndarray, starts: np.ndarray, lengths: np.ndarray
) -> np.ndarray:
    """`Hash64` of the byte ranges `buffer[starts[i]:starts[i]+lengths[i]]`.

    Args:
        buffer: uint8 `(num_bytes,)`.
        starts: int64 `(n,)` byte offsets.
        lengths: int64 `(n,)` byte lengths.

    Returns:
        int64 `(n,)`: the fingerprints' bits.
    """
    if len(starts) == 0:
        return np.empty(0, np.int64)
    # 8 zero bytes of tail padding so every 8-byte window has a home.
    padded = np.zeros(len(buffer) + 8, np.uint8)
    padded[: len(buffer)] = buffer
    words = _Words(padded)
    # Length class of each string: 0, 1-3, 4-7, 8-16, 17-32, 33-64, >64.
    low, high = np.searchsorted(
        _CLASS_EDGES, [lengths.min(), lengths.max()], side="right"
    )
    if low == high:  # one class (fixed-width ids): no per-string search
        return np.asarray(_KERNELS[low](words, starts, lengths)).view(np.int64)
    classes = np.searchsorted(_CLASS_EDGES, lengths, side="right")
    counts = np.bincount(classes, minlength=len(_KERNELS))
    out = np.empty(len(starts), np.uint64)
    for kind, kernel in enumerate(_KERNELS):
        if counts[kind] == 0:
            continue
        rows = np.flatnonzero(classes == kind)
        out[rows] = kernel(words, starts[rows], lengths[rows])
    return out.view(np.int64)


class _Words:
    """Little-endian 8-, 4- and 1-byte reads at any byte offset."""

    def __init__(self, padded: np.ndarray) -> None:
        size = len(padded) - 7
        self.u8 = padded
        # Unaligned strided views: element i holds bytes i .. i+7 (i+3).
        self.u64 = np.ndarray((size,), "<u8", padded, 0, (1,))
        self.u32 = np.ndarray((size + 4,), "<u4", padded, 0, (1,))

    def fetch64(self, offsets: np.ndarray) -> np.ndarray:
        return np.asarray(self.u64[offsets])

    def fetch32(self, offsets: np.ndarray) -> np.ndarray:
        return np.asarray(self.u32[offsets], np.uint64)

    def byte(self, offsets: np.ndarray) -> np.ndarray:
        return np.asarray(self.u8[offsets], np.uint64)


def _rotate(value: np.ndarray, shift: int) -> np.ndarray:
    return (value >> np.uint64(shift)) | (value << np.uint64(64 - shift))


def _shift_mix(value: np.ndarray) -> np.ndarray:
    return np.asarray(value ^ (value >> np.uint64(47)))


def _hash_len16(u: np.ndarray, v: np.ndarray, mul: np.ndarray) -> np.ndarray:
    a = (u ^ v) * mul
    a ^= a >> np.uint64(47)
    b = (v ^ a) * mul
    b ^= b >> np.uint64(47)
    return np.asarray(b * mul)


def _len0(words: _Words, s: np.ndarray, length: np.ndarray) -> np.ndarray:
    return np.full(len(s), _K2, np.uint64)


def _len1to3(words: _Words, s: np.ndarray, length: np.ndarray) -> np.ndarray:
    n = length.astype(np.uint64)
    a = words.byte(s)
    b = words.byte(s + (length >> 1))
    c = words.byte(s + length - 1)
    y = a + (b << np.uint64(8))
    z = n + (c << np.uint64(2))
    return _shift_mix(y * _K2 ^ z * _K0) * _K2


def _len4to7(words: _Words, s: np.ndarray, length: np.ndarray) -> np.ndarray:
    n = length.astype(np.uint64)
    mul = _K2 + n * np.uint64(2)
    a = words.fetch32(s)
    last = words.fetch32(s + length - 4)
    return _hash_len16(n + (a << np.uint64(3)), last, mul)


def _len8to16(words: _Words, s: np.ndarray, length: np.ndarray) -> np.ndarray:
    # In place where it can: the usual class (hashed ids), where every
    # temporary an expression allocates costs as much as its arithmetic.
    mul = length.astype(np.uint64)
    mul <<= np.uint64(1)
    mul += _K2  # K2 + 2 * n
    a = words.fetch64(s)
    a += _K2
    b = words.fetch64(s + length - 8)
    scratch = np.empty_like(a)
    c = _rotate_into(b, 37, scratch)
    c *= mul
    c += a
    d = _rotate_into(a, 25, scratch)
    d += b
    d *= mul
    return _hash_len16_into(c, d, mul, scratch)


def _rotate_into(
    value: np.ndarray, shift: int, scratch: np.ndarray
) -> np.ndarray:
    """`_rotate(value, shift)` in a new array, `scratch` overwritten."""
    out: np.ndarray = np.left_shift(value, np.uint64(64 - shift))
    np.right_shift(value, np.uint64(shift), out=scratch)
    out |= scratch
    return out


def _hash_len16_into(
    u: np.ndarray, v: np.ndarray, mul: np.ndarray, scratch: np.ndarray
) -> np.ndarray:
    """`_hash_len16(u, v, mul)`, overwriting `u`, `v` and `scratch`."""
    u ^= v  # a = (u ^ v) * mul
    u *= mul
    np.right_shift(u, np.uint64(47), out=scratch)
    u ^= scratch
    v ^= u  # b = (v ^ a) * mul
    v *= mul
    np.right_shift(v, np.uint64(47), out=scratch)
    v ^= scratch
    v *= mul
    return v


def _len17to32(words: _Words, s: np.ndarray, length: np.ndarray) -> np.ndarray:
    n = length.astype(np.uint64)
    end = s + length
    mul = _K2 + n * np.uint64(2)
    a = words.fetch64(s) * _K1
    b = words.fetch64(s + 8)
    c = words.fetch64(end - 8) * mul
    d = words.fetch64(end - 16) * _K2
    return _hash_len16(
        _rotate(a + b, 43) + _rotate(c, 30) + d,
        a + _rotate(b + _K2, 18) + c,
        mul,
    )


def _len33to64(words: _Words, s: np.ndarray, length: np.ndarray) -> np.ndarray:
    n = length.astype(np.uint64)
    end = s + length
    mul = _K2 + n * np.uint64(2)
    a = words.fetch64(s) * _K2
    b = words.fetch64(s + 8)
    c = words.fetch64(end - 8) * mul
    d = words.fetch64(end - 16) * _K2
    y = _rotate(a + b, 43) + _rotate(c, 30) + d
    z = _hash_len16(y, a + _rotate(b + _K2, 18) + c, mul)
    e = words.fetch64(s + 16) * mul
    f = words.fetch64(s + 24)
    g = (y + words.fetch64(end - 32)) * mul
    h = (z + words.fetch64(end - 24)) * mul
    return _hash_len16(
        _rotate(e + f, 43) + _rotate(g, 30) + h,
        e + _rotate(f + a, 18) + g,
        mul,
    )


def _weak_hash32(
    words: _Words, s: np.ndarray, a: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """`WeakHashLen32WithSeeds(s, a, b)`: 16 bytes of hash for 32 bytes."""
    w = words.fetch64(s)
    x = words.fetch64(s + 8)
    y = words.fetch64(s + 16)
    z = words.fetch64(s + 24)
    a = a + w
    b = _rotate(b + a + z, 21)
    c = a
    a = a + x + y
    b = b + _rotate(a, 44)
    return a + z, b + c


def _len_over64(
    words: _Words, starts: np.ndarray, lengths: np.ndarray
) -> np.ndarray:
    """Strings over 64 bytes: 64-byte blocks, all strings in step.

    Each string runs `(len - 1) // 64` block rounds; the rounds are applied
    to the strings that still have blocks left, then every string's last
    64 bytes finish it.
    """
    count = len(starts)
    x = np.full(count, _SEED, np.uint64)
    y = np.full(count, (_SEED * int(_K1) + 113) & _MASK64, np.uint64)
    z = _shift_mix(y * _K2 + np.uint64(113)) * _K2
    v0 = np.zeros(count, np.uint64)
    v1 = np.zeros(count, np.uint64)
    w0 = np.zeros(count, np.uint64)
    w1 = np.zeros(count, np.uint64)
    x = x * _K2 + words.fetch64(starts)
    rounds = (lengths - 1) // 64
    for block in range(int(rounds.max())):
        live = np.flatnonzero(rounds > block)
        s = starts[live] + 64 * block
        xs, ys, zs = x[live], y[live], z[live]
        v0s, v1s, w0s, w1s = v0[live], v1[live], w0[live], w1[live]
        xs = _rotate(xs + ys + v0s + words.fetch64(s + 8), 37) * _K1
        ys = _rotate(ys + v1s + words.fetch64(s + 48), 42) * _K1
        xs ^= w1s
        ys += v0s + words.fetch64(s + 40)
        zs = _rotate(zs + w0s, 33) * _K1
        v0s, v1s = _weak_hash32(words, s, v1s * _K1, xs + w0s)
        w0s, w1s = _weak_hash32(
            words, s + 32, zs + w1s, ys + words.fetch64(s + 16)
        )
        x[live], y[live], z[live] = zs, ys, xs  # std::swap(z, x)
        v0[live], v1[live], w0[live], w1[live] = v0s, v1s, w0s, w1s
    mul = _K1 + ((z & np.uint64(0xFF)) << np.uint64(1))
    s = starts + lengths - 64  # the last 64 bytes
    w0 = w0 + ((lengths - 1) & 63).astype(np.uint64)
    v0 = v0 + w0
    w0 = w0 + v0
    x = _rotate(x + y + v0 + words.fetch64(s + 8), 37) * mul
    y = _rotate(y + v1 + words.fetch64(s + 48), 42) * mul
    x ^= w1 * np.uint64(9)
    y += v0 * np.uint64(9) + words.fetch64(s + 40)
    z = _rotate(z + w0, 33) * mul
    v0, v1 = _weak_hash32(words, s, v1 * mul, x + w0)
    w0, w1 = _weak_hash32(words, s + 32, z + w1, y + words.fetch64(s + 16))
    x, z = z, x
    return _hash_len16(
        _hash_len16(v0, w0, mul) + _shift_mix(y) * _K0 + z,
        _hash_len16(v1, w1, mul) + x,
        mul,
    )


_CLASS_EDGES = np.array([1, 4, 8, 17, 33, 65])
_KERNELS = (
    _len0,
    _len1to3,
    _len4to7,
    _len8to16,
    _len17to32,
    _len33to64,
    _len_over64,
)


def _scalar(strings: list[str]) -> np.ndarray:
    """One C call per string (`pyfarmhash`): fastest for a few strings."""
    import farmhash  # optional: pyfarmhash

    return np.fromiter(
        map(farmhash.fingerprint64, strings), np.uint64, len(strings)
    ).view(np.int64)
