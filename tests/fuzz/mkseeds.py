#!/usr/bin/env python3
"""Write the seed corpora of the virtio fuzz targets (tests/fuzz/corpus/).

Each virtio seed is a real driver conversation in the command encoding
of fguest.h (virtq.c has its own): a device set up and asked to do its
ordinary work, so that the fuzzer starts from deep inside the devices.
The others are real agent streams, job payloads (the unit tests'
fixtures), logs with secrets, and zip archives, safe and hostile.
Run from the source tree; the output is committed."""
import io
import os
import shutil
import struct
import subprocess
import tarfile
import tempfile
import zipfile

MMIO_WRITE, MMIO_READ, MEM_WRITE, NOTIFY, SETUP, DESC, AVAIL, LOOP, DEVICE = range(9)
NEXT, WRITE = 1, 2


def setup(features, *sizes):
    # sizes as queue_size() reads them: 1 << (v % 9)
    return bytes([SETUP]) + struct.pack('<I', features) + bytes(sizes)


def desc(q, i, addr, length, flags, nxt=0):
    return struct.pack('<BBBBHHBB', DESC, q, i, 0, addr, length, flags, nxt)


def avail(q, head):
    return bytes([AVAIL, q, head])


def mem(gpa, data):
    assert len(data) < 256
    return struct.pack('<BHB', MEM_WRITE, gpa, len(data)) + data


def notify(q):
    return bytes([NOTIFY, q])


def mmio_read(off, width):
    return struct.pack('<BHB', MMIO_READ, off, width - 1)


def vsock_hdr(src_port, dst_port, op, length=0, src_cid=3, dst_cid=2):
    return struct.pack('<QQIIIHHIII', src_cid, dst_cid, src_port, dst_port, length, 1, op, 0,
                       65536, 0)


def blk_req(kind, sector, data_len, n=0):
    """Request n of type kind: header at 0x8000 + 16n, data, status."""
    hdr, data, status = 0x8000 + 16 * n, 0x9000 + 0x400 * n, 0xa000 + n
    out = mem(hdr, struct.pack('<IIQ', kind, 0, sector))
    d = 3 * n
    data_flags = WRITE if kind in (0, 8) else 0
    if data_len:
        out += desc(0, d, hdr, 16, NEXT, d + 1)
        out += desc(0, d + 1, data, data_len, data_flags | NEXT, d + 2)
        out += desc(0, d + 2, status, 1, WRITE)
    else:
        out += desc(0, d, hdr, 16, NEXT, d + 2)
        out += desc(0, d + 2, status, 1, WRITE)
    return out + avail(0, d) + notify(0)


def seeds():
    s = {}
    cfg_reads = b''.join(mmio_read(0x100 + off, w) for off, w in ((0, 8), (8, 4), (20, 4), (0, 1)))
    regs = b''.join(mmio_read(off, 4) for off in (0, 4, 8, 0x10, 0x34, 0x44, 0x60, 0x70, 0xfc))
    s['virtio_blk'] = {
        'read': b'\0' + setup(0x244, 4) + blk_req(0, 1, 512),
        'write-read': b'\0' + setup(0x244, 4) + mem(0x9000, b'kiln' * 16)
        + blk_req(1, 3, 512) + blk_req(0, 3, 512, 1),
        'cow-write-flush': b'\2' + setup(0x244, 4) + blk_req(1, 200, 1024) + blk_req(4, 0, 0, 1),
        'ro-getid-config': b'\1' + regs + cfg_reads + setup(0x264, 4) + blk_req(8, 0, 20)
        + blk_req(1, 0, 512, 1),
    }
    frame = bytes(12) + b'\xff' * 6 + b'\x02\0\0\0\0\1' + b'\x08\x00' + b'x' * 34
    s['virtio_net'] = {
        'rx': setup(0x10020, 4, 4) + desc(0, 0, 0x8000, 1526, WRITE) + avail(0, 0) + notify(0)
        + bytes([DEVICE, 0]) + struct.pack('<H', 60) + frame + bytes([LOOP]),
        'tx': setup(0x10020, 4, 4) + mem(0xa000, frame) + desc(1, 0, 0xa000, 60, 0) + avail(1, 0)
        + notify(1) + bytes([DEVICE, 1]),
        'config': regs + cfg_reads + setup(0x10020, 4, 4),
    }
    s['virtio_rng'] = {
        'fill': setup(0, 4) + desc(0, 0, 0x8000, 64, WRITE) + avail(0, 0) + notify(0),
        'two-segments': setup(0, 4) + desc(0, 0, 0x8000, 16, WRITE | NEXT, 1)
        + desc(0, 1, 0xc100, 16, WRITE) + avail(0, 0) + notify(0) + regs,
    }
    # op bytes of the vsock device command: op % 5 picks the action, 0x80
    # the guest-connection side.
    rx = b''.join(desc(0, i, 0x8000 + 0x400 * i, 0x400, WRITE) + avail(0, i) for i in range(4))
    hello = vsock_hdr(5000, 1024, 5, 5) + b'hello'
    s['virtio_vsock'] = {
        'guest-connect': setup(0, 4, 4, 4) + rx + notify(0)
        + mem(0xb000, vsock_hdr(5000, 1024, 1)) + desc(1, 0, 0xb000, 44, 0) + avail(1, 0)
        + notify(1) + bytes([DEVICE, 130, 0, LOOP])
        + mem(0xb100, hello) + desc(1, 1, 0xb100, len(hello), 0) + avail(1, 1) + notify(1)
        + bytes([DEVICE, 129, 0, LOOP]),
        'host-connect': setup(0, 4, 4, 4) + rx + notify(0) + bytes([DEVICE, 0, 0])
        + bytes([DEVICE, 1, 0]) + struct.pack('<I', 1234) + bytes([LOOP, LOOP])
        + mem(0xb000, vsock_hdr(1234, 1 << 30, 2)) + desc(1, 0, 0xb000, 44, 0) + avail(1, 0)
        + notify(1) + bytes([DEVICE, 2, 0, 3]) + b'abc' + bytes([LOOP, DEVICE, 4, 0]),
    }
    # virtq: size, addressing, desc/avail/used, last_avail, pops; 64 bytes
    # of copy offsets; then RAM from 0.
    ram = bytearray(0x600)
    struct.pack_into('<QIHH', ram, 0, 0x400, 16, NEXT, 1)
    struct.pack_into('<QIHH', ram, 16, 0x500, 32, WRITE, 0)
    struct.pack_into('<HHH', ram, 0x100, 0, 1, 0)
    head = struct.pack('<BBHHHHB', 3, 0x3f, 0, 0x100, 0x200, 0, 2)
    copies = struct.pack('<II', 4, 40) * 8
    s['virtq'] = {'chain': head + copies + bytes(ram)}
    loop = bytearray(ram)
    struct.pack_into('<QIHH', loop, 16, 0x500, 32, WRITE | NEXT, 0)
    s['virtq']['loop'] = head + copies + bytes(loop)
    s['snapshot'] = snapshot_seeds()
    s['agentproto'] = agent_seeds()
    s['mask'] = mask_seeds()
    s['zip'] = zip_seeds()
    s['tarin'] = tar_seeds()
    s['ext4walk'] = ext4_seeds()
    return s


def snapshot_seeds():
    """State files as kiln-vmm writes them (vmm/snapshot.h): a live
    virtio-rng's transport state, and a rate limiter's buckets."""
    import hashlib

    def section(tag, index, payload):
        pad = (8 - len(payload) % 8) % 8
        return struct.pack('<IIQ', tag, index, len(payload)) + payload + bytes(pad)

    def state_file(sections):
        body = b''.join(sections)
        length = 128 + len(body) + 32
        head = b'KILNSNAP' + struct.pack('<IIQ', 1, 128, length) + bytes(64)
        head += struct.pack('<QI', 64 << 20, len(sections))
        head += bytes(128 - len(head))
        data = head + body
        return data + hashlib.sha256(data).digest()

    # device id 4, status ACK|DRIVER|FEATURES_OK|DRIVER_OK, VERSION_1.
    rng = struct.pack('<IIIIIQIIII', 4, 15, 0, 1, 1, 1 << 32, 0, 1, 0, 4)
    rng += struct.pack('<IIQQQII', 16, 1, 0x1000, 0x2000, 0x3000, 7, 7)
    rng += struct.pack('<IIQQQII', 0, 0, 0, 0, 0, 0, 0) * 3
    buckets = struct.pack('<QQQ', 500, 10, 0) * 2
    return {
        'rng-live': state_file([section(5, 0, rng)]),
        'limiter': state_file([section(2, 0, buckets)]),
        'empty': state_file([]),
    }


def tar_bytes(entries, fmt=tarfile.PAX_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w', format=fmt) as t:
        for name, kind, data, mode in entries:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = kind, mode, 1700000000
            if kind == tarfile.SYMTYPE or kind == tarfile.LNKTYPE:
                info.linkname = data.decode()
                data = b''
            info.size = len(data)
            t.addfile(info, io.BytesIO(data) if data else None)
    return buf.getvalue()


def tar_seeds():
    # What kiln-diskread sends (pax), and what a compromised one might.
    return {
        'tree': tar_bytes([('dir', tarfile.DIRTYPE, b'', 0o755),
                           ('dir/a.txt', tarfile.REGTYPE, b'hello\n' * 20, 0o644),
                           ('dir/link', tarfile.SYMTYPE, b'a.txt', 0o777)]),
        'hostile': tar_bytes([('../escape', tarfile.REGTYPE, b'x', 0o644),
                              ('/abs', tarfile.REGTYPE, b'x', 0o644),
                              ('up', tarfile.SYMTYPE, b'../../etc', 0o777),
                              ('up/passwd', tarfile.REGTYPE, b'x', 0o644),
                              ('hard', tarfile.LNKTYPE, b'/etc/passwd', 0o644),
                              ('suid', tarfile.REGTYPE, b'x', 0o4755),
                              ('dev', tarfile.CHRTYPE, b'', 0o666)]),
        'gnu-long-name': tar_bytes([('d/' + 'n' * 200, tarfile.REGTYPE, b'long', 0o644)],
                                   tarfile.GNU_FORMAT),
    }


def ext4_seeds():
    """A small ext4 image of a workspace (mke2fs -d), when mke2fs is here."""
    mke2fs = shutil.which('mke2fs') or '/sbin/mke2fs'
    if not os.path.exists(mke2fs):
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, 'root')
        os.makedirs(os.path.join(root, 'g/demo/.git'))
        with open(os.path.join(root, 'g/demo/.git/index'), 'wb') as f:
            f.write(b'DIRC' + bytes(28))
        with open(os.path.join(root, 'g/demo/out.txt'), 'w') as f:
            f.write('artifact\n')
        os.symlink('out.txt', os.path.join(root, 'g/demo/link'))
        img = os.path.join(tmp, 'img')
        # Fixed UUID, hash seed and time: the same image every time.
        subprocess.run([mke2fs, '-q', '-F', '-t', 'ext4', '-b', '1024', '-N', '32', '-O',
                        '^has_journal,^resize_inode', '-U', '6b696c6e-0000-4000-8000-000000000001',
                        '-E', 'root_owner=0:0,hash_seed=6b696c6e-0000-4000-8000-000000000002',
                        '-d', root, img, '128'], check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, 'E2FSPROGS_FAKE_TIME': '1700000000'})
        with open(img, 'rb') as f:
            return {'workspace': f.read()}


def frame(kind, payload):
    return struct.pack('<IB3x', len(payload), kind) + payload


def agent_seeds():
    cuts = bytes([0, 3, 1, 200, 7, 0, 50, 2])
    hello = frame(1, b'{"version": 1, "agent": "kiln-agent 0.1.0", "features": ["shell"]}')
    job = (frame(3, b'$ make\r\n') + frame(4, b'{"step": "script", "exit_code": 0}')
           + frame(5, b'{"exit_code": 0}'))
    return {
        'job': cuts + hello + job,
        'host': cuts + frame(2, b'{"steps": []}') + frame(6, b'{"graceful": true}')
        + frame(7, b'{"rows": 24, "cols": 80, "term": "xterm"}') + frame(8, b'ls\n')
        + frame(9, b'{"rows": 50, "cols": 132}'),
        'bad-type': cuts + hello + frame(10, b''),
        'too-big': cuts + struct.pack('<IB3x', (1 << 20) + 1, 3) + b'x' * 16,
        'hostile-payloads': cuts + frame(1, b'[1]') + frame(1, b'{"features": [7, "late-workspace"]}')
        + frame(4, b'{"exit_code": 99999999999}') + frame(4, b'{"exit_code": "0"}')
        + frame(5, b'{"exit_code": -1, "failure_reason": "\\u001b]0;pwned\\u0007"}')
        + frame(5, b'{"exit_code": 1, "failure_reason": "script_failure", "exit_code": 2}'),
    }


def mask_seeds():
    # secrets: count-1, then per secret its length-2 and characters as
    # indexes into mask.c's alphabet "0123456789bfjqw"; 8 cut bytes; log.
    def secret(text):
        alphabet = '0123456789bfjqw'
        return bytes([len(text) - 2]) + bytes(alphabet.index(c) for c in text)

    head = bytes([1]) + secret('w0bfq') + secret('12345678')
    cuts = bytes([2, 0, 5, 1, 15, 3, 0, 7])
    return {
        'secrets': head + cuts + b'password w0bfq and 12345678, w0bf 1234567 w0bfqw0bfq\n',
        'tokens': head + cuts + b'git clone https://x:glpat-abc.DEF_12=3@h/r ?private_token=s3&x=1 '
        b'&X-Amz-Signature=ab"12345678#\n',
    }


def zip_bytes(entries, zip64=False):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w', zipfile.ZIP_DEFLATED) as z:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name, (2024, 1, 2, 3, 4, 5))
            info.external_attr = mode << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with z.open(info, 'w', force_zip64=zip64) as f:
                f.write(data)
    return buf.getvalue()


def zip_seeds():
    return {
        'tree': zip_bytes([('dir/', b'', 0o40755), ('dir/a.txt', b'hello\n' * 20, 0o100644),
                           ('bin/run', b'#!/bin/sh\n', 0o100755)]),
        'hostile': zip_bytes([('../escape', b'x', 0o100644), ('/abs', b'x', 0o100644),
                              ('link', b'/etc', 0o120777), ('suid', b'x', 0o104755),
                              ('a\\b', b'x', 0o100644)]),
        'stored': zipfile_stored(),
        'zip64': zipfile_zip64(),
    }


def zipfile_stored():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w', zipfile.ZIP_STORED) as z:
        z.writestr(zipfile.ZipInfo('plain', (2024, 1, 2, 3, 4, 5)), b'stored bytes')
    return buf.getvalue()


def zipfile_zip64():
    # Every size and offset in zip64 extra fields, and a zip64 end record:
    # zipfile writes them past its limits, lowered to 0 here.
    limits = zipfile.ZIP64_LIMIT, zipfile.ZIP_FILECOUNT_LIMIT
    zipfile.ZIP64_LIMIT = zipfile.ZIP_FILECOUNT_LIMIT = 0
    try:
        return zip_bytes([('dir/', b'', 0o40755), ('dir/big', b'z' * 300, 0o100644),
                          ('link', b'../..', 0o120777), ('link/x', b'x', 0o100644)], True)
    finally:
        zipfile.ZIP64_LIMIT, zipfile.ZIP_FILECOUNT_LIMIT = limits


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    top = os.path.join(here, 'corpus')
    payloads = os.path.join(here, '..', 'fixtures', 'payload')
    os.makedirs(os.path.join(top, 'payload'), exist_ok=True)
    for name in ('good.json', 'gitlab-test.json', 'bad-when.json'):
        shutil.copy(os.path.join(payloads, name), os.path.join(top, 'payload', name))
    for target, files in seeds().items():
        os.makedirs(os.path.join(top, target), exist_ok=True)
        for name, data in files.items():
            path = os.path.join(top, target, name)
            # mke2fs takes inode times from the files it copies: an image
            # made again differs in them, so one is made only once.
            if target == 'ext4walk' and os.path.exists(path):
                continue
            with open(path, 'wb') as f:
                f.write(data)


if __name__ == '__main__':
    main()
