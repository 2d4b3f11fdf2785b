"""Our partitioner must agree with the Java client's default partitioner, so any producer lands a run's
records on the same partition as ours (the partition that owns the run)."""

from __future__ import annotations

import pytest

from streams.kafka import murmur2_partition, partition_for

# org.apache.kafka.common.utils.UtilsTest#testMurmur2: Utils.murmur2(bytes) as a signed Java int.
KAFKA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


# librdkafka src/rdmurmur2.c unittest_murmur2, `java_murmur2_results` (asserted there to equal Java's):
# they cover every tail length (key length % 4 == 0, 1, 2, 3) and the empty key.
LIBRDKAFKA_MURMUR2 = {
    b"kafka": 0xD067CF64,
    b"giberish123456789": 0x8F552B0C,
    b"1234": 0x9FC97B14,
    b"234": 0xE7C009CA,
    b"34": 0x873930DA,
    b"4": 0x5A4B5CA1,
    b"PreAmbleWillBeRemoved,ThePrePartThatIs": 0x78424F1C,
    b"reAmbleWillBeRemoved,ThePrePartThatIs": 0x4A62B377,
    b"eAmbleWillBeRemoved,ThePrePartThatIs": 0xE0E4E09E,
    b"AmbleWillBeRemoved,ThePrePartThatIs": 0x62B8B43F,
    b"": 0x106E08D9,
}


def to_positive(h: int) -> int:
    """Kafka's Utils.toPositive: clear the sign bit (not abs())."""
    return h & 0x7FFFFFFF


@pytest.mark.parametrize(("key", "java_hash"), KAFKA_MURMUR2.items(), ids=[k.decode() for k in KAFKA_MURMUR2])
def test_raw_murmur2_matches_kafkas_test_vectors(key: bytes, java_hash: int) -> None:
    # With 2**31 partitions, (h & 0x7fffffff) % n is h & 0x7fffffff itself: the full positive hash.
    assert murmur2_partition(key, 2**31) == to_positive(java_hash)


@pytest.mark.parametrize("partitions", [1, 2, 3, 6, 12, 64, 1000])
@pytest.mark.parametrize(("key", "java_hash"), KAFKA_MURMUR2.items(), ids=[k.decode() for k in KAFKA_MURMUR2])
def test_partition_is_the_java_default_partitioner(key: bytes, java_hash: int, partitions: int) -> None:
    # DefaultPartitioner / BuiltInPartitioner.partitionForKey: toPositive(murmur2(key)) % numPartitions
    assert murmur2_partition(key, partitions) == to_positive(java_hash) % partitions


def test_sign_bit_is_masked_not_negated() -> None:
    """Negative hashes go through & 0x7fffffff; abs() would give another partition."""
    h = KAFKA_MURMUR2[b"foobar"]
    assert h < 0
    assert murmur2_partition(b"foobar", 2**31) != abs(h)


@pytest.mark.parametrize(("key", "hash32"), LIBRDKAFKA_MURMUR2.items(), ids=[repr(k) for k in LIBRDKAFKA_MURMUR2])
def test_raw_murmur2_matches_librdkafkas_java_vectors(key: bytes, hash32: int) -> None:
    assert {len(k) % 4 for k in LIBRDKAFKA_MURMUR2} == {0, 1, 2, 3}
    assert murmur2_partition(key, 2**31) == to_positive(hash32)
    assert murmur2_partition(key, 6) == to_positive(hash32) % 6


def test_partition_for_encodes_the_key_as_utf8() -> None:
    for key in ("fnol-acme-CLM-100001", "run-ünïcode-✓"):
        for n in (1, 6, 12):
            assert partition_for(key, n) == murmur2_partition(key.encode("utf-8"), n)
            assert 0 <= partition_for(key, n) < n
