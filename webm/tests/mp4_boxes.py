#!/usr/bin/env python3
"""An independent check of a finalized MP4, written apart from the crate it checks.

    python3 webm/tests/mp4_boxes.py FILE

Walks every box and checks what a seeking player relies on: boxes tile the file; the durations
in mvhd, mehd, tkhd and mdhd; every sidx reference starts at a moof and the references reach the
end of the file (or the mfra); every tfra entry points at a moof; every trun's sample data lies
inside an mdat (so moved base_data_offsets were patched). Prints `key=value` lines; exits 1 with
a message on the first violation.
"""

import struct
import sys

CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"mvex", b"moof", b"traf", b"mfra", b"edts", b"dinf"}


def fail(message):
    print(f"error={message}")
    sys.exit(1)


def boxes(data, start, end):
    """(type, box start, data start, box end) of the boxes tiling data[start:end]."""
    pos = start
    while pos < end:
        if end - pos < 8:
            fail(f"{end - pos} stray bytes at {pos}")
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        header = 8
        if size == 1:
            size = struct.unpack(">Q", data[pos + 8:pos + 16])[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            fail(f"box {kind!r} at {pos} has size {size}, beyond its parent")
        yield kind, pos, pos + header, pos + size
        pos += size


def child(data, start, end, kind):
    for k, _, body, stop in boxes(data, start, end):
        if k == kind:
            return body, stop
    return None


def full_header(data, at):
    word = struct.unpack(">I", data[at:at + 4])[0]
    return word >> 24, word & 0xFFFFFF


def duration_field(data, body, kind):
    """(timescale or None, duration) of an mvhd, tkhd or mdhd body."""
    version, _ = full_header(data, body)
    if kind == b"tkhd":
        at = body + (28 if version == 1 else 20)
        timescale = None
    else:
        ts_at = body + (20 if version == 1 else 12)
        timescale = struct.unpack(">I", data[ts_at:ts_at + 4])[0]
        at = ts_at + 4
    fmt = ">Q" if version == 1 else ">I"
    return timescale, struct.unpack(fmt, data[at:at + struct.calcsize(fmt)])[0]


def main(path):
    with open(path, "rb") as f:
        data = f.read()
    top = list(boxes(data, 0, len(data)))
    kinds = [k for k, _, _, _ in top]
    if kinds[:2] != [b"ftyp", b"moov"]:
        fail(f"the file starts with {kinds[:2]}, not ftyp and moov")
    moofs = {start for k, start, _, _ in top if k == b"moof"}
    mdats = [(body, stop) for k, _, body, stop in top if k == b"mdat"]
    out = {"moofs": len(moofs)}

    _, moov_start, moov_body, moov_end = top[1]
    mvhd_body, _ = child(data, moov_body, moov_end, b"mvhd")
    movie_timescale, movie_duration = duration_field(data, mvhd_body, b"mvhd")
    out["mvhd_secs"] = movie_duration / movie_timescale
    tracks = {}
    for kind, _, body, stop in boxes(data, moov_body, moov_end):
        if kind == b"trak":
            tkhd_body, _ = child(data, body, stop, b"tkhd")
            version, _ = full_header(data, tkhd_body)
            track_id = struct.unpack(">I", data[tkhd_body + (20 if version == 1 else 12):][:4])[0]
            _, tkhd_duration = duration_field(data, tkhd_body, b"tkhd")
            mdia_body, mdia_end = child(data, body, stop, b"mdia")
            mdhd_body, _ = child(data, mdia_body, mdia_end, b"mdhd")
            timescale, mdhd_duration = duration_field(data, mdhd_body, b"mdhd")
            tracks[track_id] = timescale
            out[f"track.{track_id}.tkhd_secs"] = tkhd_duration / movie_timescale
            out[f"track.{track_id}.mdhd_secs"] = mdhd_duration / timescale
        if kind == b"mvex":
            first = next(boxes(data, body, stop), None)
            if first is None or first[0] != b"mehd":
                fail("mvex does not start with an mehd")
            version, _ = full_header(data, first[2])
            fmt = ">Q" if version == 1 else ">I"
            mehd = struct.unpack(fmt, data[first[2] + 4:first[2] + 4 + struct.calcsize(fmt)])[0]
            out["mehd_secs"] = mehd / movie_timescale

    mfra_size = 0
    if kinds[-1] == b"mfra":
        _, start, body, stop = top[-1]
        mfra_size = stop - start
        mfro = struct.unpack(">I", data[-4:])[0]
        if mfro != mfra_size:
            fail(f"mfro says {mfro}, the mfra is {mfra_size} bytes")
        entries = 0
        for kind, _, tbody, tstop in boxes(data, body, stop):
            if kind != b"tfra":
                continue
            version, _ = full_header(data, tbody)
            sizes = struct.unpack(">I", data[tbody + 8:tbody + 12])[0]
            count = struct.unpack(">I", data[tbody + 12:tbody + 16])[0]
            at = tbody + 16
            width = 8 if version == 1 else 4
            skip = ((sizes >> 4 & 3) + 1) + ((sizes >> 2 & 3) + 1) + ((sizes & 3) + 1)
            for _ in range(count):
                moof = struct.unpack(">Q" if width == 8 else ">I", data[at + width:at + 2 * width])[0]
                if moof not in moofs:
                    fail(f"a tfra entry points at {moof}, not at a moof")
                at += 2 * width + skip
                entries += 1
        out["tfra_entries"] = entries
    out["mfra"] = "yes" if mfra_size else "no"

    sidx_count = 0
    for kind, start, body, stop in top:
        if kind != b"sidx":
            continue
        sidx_count += 1
        version, _ = full_header(data, body)
        track, timescale = struct.unpack(">II", data[body + 4:body + 12])
        if version == 0:
            earliest, first_offset = struct.unpack(">II", data[body + 12:body + 20])
            at = body + 20
        else:
            earliest, first_offset = struct.unpack(">QQ", data[body + 12:body + 28])
            at = body + 28
        count = struct.unpack(">H", data[at + 2:at + 4])[0]
        at += 4
        offset = stop + first_offset
        total = 0
        for i in range(count):
            size_word, duration, sap = struct.unpack(">III", data[at:at + 12])
            if size_word >> 31:
                fail("a sidx reference points at another sidx")
            if offset not in moofs:
                fail(f"sidx reference {i} of track {track} points at {offset}, not at a moof")
            offset += size_word & 0x7FFFFFFF
            total += duration
            at += 12
        key = f"sidx.{track}"
        out[f"{key}.references"] = out.get(f"{key}.references", 0) + count
        out[f"{key}.end_secs"] = (earliest + total) / timescale
        if offset == len(data):
            out[f"{key}.reaches"] = "eof"
        elif offset == len(data) - mfra_size:
            out[f"{key}.reaches"] = "mfra"
        else:
            out[f"{key}.reaches"] = f"{offset} of {len(data)}"
    out["sidx_boxes"] = sidx_count

    # Every run's samples lie inside an mdat: base offsets moved with the fragments.
    trex = {}
    mvex = child(data, moov_body, moov_end, b"mvex")
    if mvex:
        for kind, _, body, _ in boxes(data, *mvex):
            if kind == b"trex":
                tid, _, dur, size, flags = struct.unpack(">IIIII", data[body + 4:body + 24])
                trex[tid] = size
    for kind, moof, body, stop in top:
        if kind != b"moof":
            continue
        implicit = moof
        for tkind, _, tbody, tstop in boxes(data, body, stop):
            if tkind != b"traf":
                continue
            tfhd, _ = child(data, tbody, tstop, b"tfhd")
            _, flags = full_header(data, tfhd)
            track_id = struct.unpack(">I", data[tfhd + 4:tfhd + 8])[0]
            at = tfhd + 8
            base = moof if flags & 0x20000 else implicit
            if flags & 1:
                base = struct.unpack(">Q", data[at:at + 8])[0]
                at += 8
            if flags & 2:
                at += 4
            if flags & 8:
                at += 4
            default_size = trex.get(track_id, 0)
            if flags & 0x10:
                default_size = struct.unpack(">I", data[at:at + 4])[0]
            next_data = base
            for rkind, _, rbody, _ in boxes(data, tbody, tstop):
                if rkind != b"trun":
                    continue
                _, rflags = full_header(data, rbody)
                count = struct.unpack(">I", data[rbody + 4:rbody + 8])[0]
                at = rbody + 8
                start = next_data
                if rflags & 1:
                    start = base + struct.unpack(">i", data[at:at + 4])[0]
                    at += 4
                if rflags & 4:
                    at += 4
                fields = [bit for bit in (0x100, 0x200, 0x400, 0x800) if rflags & bit]
                size = 0
                for _ in range(count):
                    for bit in fields:
                        if bit == 0x200:
                            size += struct.unpack(">I", data[at:at + 4])[0]
                        at += 4
                    if 0x200 not in fields:
                        size += default_size
                if size and not any(b <= start and start + size <= e for b, e in mdats):
                    fail(f"track {track_id}'s samples at {start}..{start + size} are not inside an mdat")
                next_data = start + size
            implicit = next_data
    for key, value in out.items():
        print(f"{key}={value}")


if __name__ == "__main__":
    main(sys.argv[1])
