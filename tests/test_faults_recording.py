"""Fault injection on recordings: damaged, truncated and zero-filled ``frames.bin`` files (format 2 and
the old format 1) lose only the damaged records; what was skipped is reported; replay goes on."""
from __future__ import annotations

import json
import random

import msgpack
import numpy as np
import pytest

from realtime.cli import main
from realtime.codec import pack
from realtime.recording import (FRAMES_FILE, META_FILE, RECORDING_SCHEMA_V1, SYNC, encode_record, encode_record_v1,
                                load_recording, scan_records)
from realtime.sinks.recorder import Recorder

from .test_recorder import assert_same_person, make_recording, result_for

N = 40


@pytest.fixture()
def rec40(tmp_path):
    sent = make_recording(tmp_path / "rec", n=N)
    data = (tmp_path / "rec" / FRAMES_FILE).read_bytes()
    return tmp_path / "rec", sent, data, scan_records(data).offsets


def _write(rec, data: bytes):
    (rec / FRAMES_FILE).write_bytes(data)
    return load_recording(rec)


def _ids(recording):
    return [f.frame_id for f in recording.frames]


def test_written_recordings_are_format_2(rec40):
    rec, sent, data, offsets = rec40
    assert json.loads((rec / META_FILE).read_text())["schema"] == "smplerx-mocap-recording/2"
    assert all(data[o:o + 4] == SYNC for o in offsets) and len(offsets) == N
    recording = load_recording(rec)
    assert recording.version == 2 and recording.problems() == [] and not recording.truncated


def test_zero_filled_tail_loses_only_itself(rec40):
    """What a power loss leaves: the file's size was extended but the last blocks never reached the disk."""
    rec, sent, data, offsets = rec40
    recording = _write(rec, data + bytes(8192))
    assert _ids(recording) == list(range(N))
    assert recording.truncated and len(recording.damaged) == 1
    assert recording.damaged[0].start == len(data) and recording.damaged[0].reason == "zero-filled bytes"
    # the zeros overwrite the last record's end: that record alone is lost
    zeroed = data[:offsets[-1] + 20] + bytes(8192)
    recording = _write(rec, zeroed)
    assert _ids(recording) == list(range(N - 1)) and recording.truncated


def test_zeroed_block_mid_file_skips_to_the_next_record(rec40):
    rec, sent, data, offsets = rec40
    b = bytearray(data)
    b[offsets[10]:offsets[13]] = bytes(offsets[13] - offsets[10])  # records 10-12 zeroed (headers included)
    recording = _write(rec, bytes(b))
    assert _ids(recording) == [i for i in range(N) if i not in (10, 11, 12)]
    assert recording.missing_indices == [10, 11, 12] and not recording.truncated
    assert any("zero-filled" in line for line in recording.problems())


def test_flipped_byte_in_record_20_of_40_loses_only_record_20(rec40):
    rec, sent, data, offsets = rec40
    for where in (offsets[19] + 2, offsets[19] + 6, offsets[19] + 10, offsets[19] + 200):  # marker, length, crc, payload
        b = bytearray(data)
        b[where] ^= 0x5A
        recording = _write(rec, bytes(b))
        assert _ids(recording) == [i for i in range(N) if i != 19], where
        assert recording.missing_indices == [19]
        for s, r in zip([s for s in sent if s.frame_id != 19], recording.frames):
            for a, c in zip(s.persons, r.persons):
                assert_same_person(a, c)


def test_truncation_at_any_point_of_the_last_record(rec40):
    rec, sent, data, offsets = rec40
    for cut in range(offsets[-1] + 1, len(data), 97):
        recording = _write(rec, data[:cut])
        assert _ids(recording) == list(range(N - 1)) and recording.truncated


def test_random_damage_never_loses_an_untouched_record(rec40):
    """Fuzz: random byte flips, zeroed runs and a cut; every record whose bytes were not touched is read."""
    rec, sent, data, offsets = rec40
    ends = offsets[1:] + [len(data)]
    rng = random.Random(7)
    for trial in range(60):
        b = bytearray(data)
        touched = set()
        for _ in range(rng.randint(1, 4)):
            start = rng.randrange(len(b))
            length = rng.choice([1, 1, 3, 16, 700])
            for i in range(start, min(len(b), start + length)):
                b[i] = 0 if length > 3 else b[i] ^ rng.randrange(1, 256)
            touched.update(k for k, (o, e) in enumerate(zip(offsets, ends)) if o < start + length and start < e)
        cut = len(b) if rng.random() < 0.5 else rng.randrange(len(b))
        touched.update(k for k, e in enumerate(ends) if e > cut)
        recording = _write(rec, bytes(b[:cut]))
        assert set(_ids(recording)) == set(range(N)) - touched, trial
        assert (recording.damaged != []) == bool(touched)


def test_record_that_is_not_a_map_is_skipped(rec40):
    rec, sent, data, offsets = rec40
    bogus = encode_record(msgpack.packb(12345)) + encode_record(msgpack.packb({"index": 99, "no": "frame"}))
    recording = _write(rec, data[:offsets[5]] + bogus + data[offsets[5]:])
    assert _ids(recording) == list(range(N))
    problems = " | ".join(recording.problems())
    assert "not a map" in problems and "not a frame" in problems


def _v1_recording(directory, n=N):
    directory.mkdir()
    records = []
    for i in range(n):
        from realtime.codec import result_to_dict

        d = result_to_dict(result_for(i))
        d.update(index=i, image=None)
        records.append(encode_record_v1(pack(d)))
    (directory / META_FILE).write_text(json.dumps({"schema": RECORDING_SCHEMA_V1, "complete": True}))
    (directory / FRAMES_FILE).write_bytes(b"".join(records))
    offsets = np.cumsum([0] + [len(r) for r in records])[:-1].tolist()
    return b"".join(records), offsets


def test_format_1_recordings_are_still_read_and_resynchronised(tmp_path):
    rec = tmp_path / "v1"
    data, offsets = _v1_recording(rec)
    recording = load_recording(rec)
    assert recording.version == 1 and _ids(recording) == list(range(N)) and not recording.damaged
    b = bytearray(data)
    b[offsets[19] + 100] ^= 0xFF  # a flipped byte in record 20: format 1 used to lose everything after it
    recording = _write(rec, bytes(b) + bytes(4096))  # ... and a zero-filled tail
    assert _ids(recording) == [i for i in range(N) if i != 19]
    assert recording.truncated and recording.missing_indices == [19]
    # an all-zero format-1 header passed its CRC (crc32(b"") == 0): no longer read as an empty record
    recording = _write(rec, data[:offsets[3]] + bytes(8) + data[offsets[3]:])
    assert _ids(recording) == list(range(N)) and len(recording.damaged) == 1


def test_replay_cli_reports_damage_and_sends_the_rest(rec40, capsys, caplog):
    rec, sent, data, offsets = rec40
    b = bytearray(data)
    b[offsets[19] + 300] ^= 0x01
    (rec / FRAMES_FILE).write_bytes(bytes(b) + bytes(1000))
    assert main(["replay", str(rec), "--osc", "none", "--zmq", "none", "--speed", "50"]) == 0
    out, err = capsys.readouterr()
    assert "39 frame(s) sent" in out and "3 damaged part(s) skipped" in out
    warnings = caplog.text  # the command line's log handler prints these on stderr
    assert "CRC mismatch" in warnings and "zero-filled" in warnings and "index 19" in warnings
    assert "Traceback" not in err


def test_replay_cli_unreadable_recordings_are_one_line(tmp_path, capsys):
    rec = tmp_path / "rec"
    make_recording(rec, n=3)
    (rec / META_FILE).write_text("{not json")
    assert main(["replay", str(rec), "--osc", "none", "--zmq", "none"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "meta.json" in err
    (rec / META_FILE).unlink()
    (rec / FRAMES_FILE).write_bytes(bytes(5000))
    assert main(["replay", str(rec), "--osc", "none", "--zmq", "none"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no intact frame" in err


def test_recorder_directory_that_is_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        Recorder(tmp_path / "f")
    with pytest.raises(OSError, match="cannot create recording directory"):
        Recorder(tmp_path / "f" / "rec")
