#!/usr/bin/env python3
"""comfyinfra model sync: runs ON the ComfyUI host (stdlib only, Python >= 3.8).

Uploaded by the `models` role and run as root. Reads a JSON manifest:

    check MANIFEST_JSON     print each model's state from stat() and its marker only (never reads a model)
    sync  < MANIFEST_JSON   make every model present and verified; the manifest may carry tokens, so it
                            comes on stdin, never in argv

Layout: every file is stored once as a blob, `<blobs>/<sha256>`, and hard-linked to each declared
path (two folders declaring the same sha256 share one copy). Next to a blob, `<sha256>.verified`
records (sha256, size, inode, mtime_ns, ctime_ns) after a full verification; a later run compares that
with stat() alone, and re-verifies only a file that changed behind our back.

Why stat and not a re-hash: a no-op deploy must not read hundreds of GB. What makes the stat-only
check trustworthy is that only root can produce its inputs: the blobs, markers and logs live in
root-owned directories (comfyinfra's layout), and a marker or blob counts only when it is a regular
file owned by the uid running this helper and not writable by group or others. A marker also records
the blob's ctime, which no system call sets back: a blob that was chowned (a tree taken over from the
service user, forged marker and all), chmod-ed, re-linked or rewritten with its mtime put back is
hashed again. And the file's size must equal the declared size, whatever the marker says.

Every file this helper writes is created without following a link (O_NOFOLLOW, O_EXCL), with a fixed
mode, and markers land by rename from a temp file in the same directory.

A download goes to `<blobs>/<sha256>.partial` (same filesystem: the final rename is atomic), resumes
with an HTTP Range request after an interruption, retries with backoff, hashes while it streams (a
second thread, so hashing overlaps the transfer) and is renamed into place only once its size and
sha256 are right. A wrong file never reaches a final path. It stops reading at the declared size: a
server that announces or sends more fails the model.

A bearer token goes only to the URL's own origin (scheme, host and port): a redirect elsewhere,
https -> http on the same host included, goes without it.
"""

import hashlib
import http.client
import json
import os
import queue
import re
import shutil
import stat
import sys
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

CHUNK = 1 << 20
RETRIES = 5
PROGRESS_EVERY_S = 2.0
BLOB_MODE = 0o644  # the service reads the blobs through their hard links
STATE_MODE = 0o640  # markers and progress logs: root's (the unit's UMask=0027)
# A bearer token is visible ASCII (RFC 6750's b64token is a subset): anything else - a trailing newline above all -
# would make http.client raise an error that quotes the whole header, token included. The preflight checks the same.
BEARER_TOKEN = re.compile(r"[\x21-\x7e]+")


class SyncError(Exception):
    """A model could not be made right; the message names model, host, and what went wrong."""


# --- files: never through a link, trusted only when they are our own ----------------------------


def ours(st):
    """A regular file (not a link) owned by the uid running this helper, that no group or other user can write."""
    return stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o022


def open_file(path, flags, mode=STATE_MODE):
    """os.open that never follows a link at `path` and refuses anything but a regular file (O_NONBLOCK: a FIFO
    planted there must not hang us)."""
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError("{} is not a regular file".format(path))
    return fd


def create_file(path, mode=STATE_MODE):
    """A new, empty file of our own at `path` (whatever was there is removed first, never opened), as a binary
    writer. The mode is set explicitly: a umask must not make a blob group-writable (and so untrusted)."""
    if os.path.lexists(path):
        os.unlink(path)
    fd = open_file(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    os.fchmod(fd, mode)
    return os.fdopen(fd, "wb")


def replace_file(path, data):
    """`path` holds `data`: written to a temp file in the same directory, then renamed over `path`."""
    tmp = path + ".tmp"
    with create_file(tmp) as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


# --- state: stat + marker only ---------------------------------------------------------------


def blob_path(manifest, model):
    return os.path.join(manifest["blobs"], model["sha256"])


def identity(st):
    """What a marker pins of the blob it vouches for. No system call sets a ctime back: chown, chmod, a new hard
    link or a write with the mtime put back all leave a new one."""
    return {"size": st.st_size, "inode": st.st_ino, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns}


def read_marker(blob):
    """The marker next to the blob, only if it is our own file; None otherwise."""
    try:
        fd = open_file(blob + ".verified", os.O_RDONLY)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        if not ours(os.fstat(handle.fileno())):
            return None
        try:
            marker = json.loads(handle.read(1 << 16).decode())
        except (OSError, ValueError):
            return None
    return marker if isinstance(marker, dict) else None


def marker_matches(blob, model):
    """True when the blob is the file that was verified, by stat() alone: our own regular file, of the declared
    size, and the marker (our own) names the model's sha256 and the blob's current identity."""
    try:
        st = os.lstat(blob)
    except OSError:
        return False
    if not ours(st) or (model.get("size") and st.st_size != model["size"]):
        return False
    marker = read_marker(blob)
    return (marker is not None and marker.get("sha256") == model["sha256"]
            and {key: marker.get(key) for key in identity(st)} == identity(st))


def write_marker(blob, sha256):
    """Vouch for the blob as it is now. Written after the blob's last link is made (a link changes its ctime)."""
    record = dict(identity(os.lstat(blob)), sha256=sha256,
                  verified_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    replace_file(blob + ".verified", json.dumps(record, sort_keys=True).encode())


def linked(blob, dest):
    """True when dest is a hard link of the blob (not a symlink to it, not a copy)."""
    try:
        return os.lstat(dest).st_ino == os.lstat(blob).st_ino
    except OSError:
        return False


def model_state(manifest, model):
    """'ok' | 'relink' (blob verified, a path is missing or not our blob) | 'verify' (blob changed) | 'fetch'."""
    blob = blob_path(manifest, model)
    if not os.path.lexists(blob):
        return "fetch"
    if not marker_matches(blob, model):
        return "verify"
    if not all(linked(blob, dest) for dest in model["dests"]):
        return "relink"
    return "ok"


def check(manifest):
    return {model["name"]: model_state(manifest, model) for model in manifest["models"]}


# --- verification and placement ---------------------------------------------------------------


def sha256_of(handle, copy_to=None):
    """sha256 of an open file, read once; with copy_to, its bytes are written to a new file there as they are read."""
    digest = hashlib.sha256()
    target = create_file(copy_to, BLOB_MODE) if copy_to else None
    try:
        for chunk in iter(lambda: handle.read(CHUNK * 4), b""):
            digest.update(chunk)
            if target:
                target.write(chunk)
        if target:
            target.flush()
            os.fsync(target.fileno())
    finally:
        if target:
            target.close()
    return digest.hexdigest()


def link_into_place(blob, dest):
    """Hard-link the blob to dest atomically (link to a temp name, then rename over dest: a link at dest is
    replaced, never followed)."""
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    tmp = "{}.comfyinfra-link".format(dest)
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.link(blob, tmp, follow_symlinks=False)
    os.replace(tmp, dest)


def remove_blob(blob):
    for stale in (blob, blob + ".verified"):
        if os.path.lexists(stale):
            os.unlink(stale)


def adopt_existing(manifest, model, log):
    """Bytes already on disk (a blob that changed since it was verified, or a declared path that is not our
    blob) are kept if, and only if, they have the declared size and hash right; a wrong blob is removed. Each
    inode is read once, links are not followed. A file that is not our own (a copy placed by hand, a blob from
    before root took the tree over) is copied into a new blob while it is hashed: no one else may be able to
    change a blob we vouch for."""
    blob = blob_path(manifest, model)
    seen = set()
    for path in [blob] + list(model["dests"]):
        got = copy = None
        try:
            handle = os.fdopen(open_file(path, os.O_RDONLY), "rb")
        except OSError:  # absent, a link, a directory
            continue
        with handle:
            st = os.fstat(handle.fileno())
            if st.st_ino in seen:
                continue
            seen.add(st.st_ino)
            if model.get("size") and st.st_size != model["size"]:
                log.line("{} has {} bytes, expected {}: it will be replaced".format(path, st.st_size, model["size"]))
            else:
                log.line("verifying {} (changed since it was verified, or not verified yet)".format(path))
                copy = None if ours(st) else blob + ".adopt"
                got = sha256_of(handle, copy_to=copy)
        if got == model["sha256"]:
            if copy:
                os.replace(copy, blob)
            elif path != blob:
                link_into_place(path, blob)
            return True
        if got is not None:
            if copy:
                os.unlink(copy)
            log.line("{} has sha256 {}, expected {}: it will be replaced".format(path, got, model["sha256"]))
        if path == blob:
            remove_blob(blob)
    return False


# --- download -------------------------------------------------------------------------------------


class ProgressLog:
    """Per-model progress file on the host: bytes, rate, ETA every few seconds (never the URL's secrets)."""

    def __init__(self, path, name):
        self.path, self.name = path, name
        self.last = 0.0
        if path:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            create_file(path).close()  # each run starts a new log (a link left there is removed, not followed)

    def line(self, text):
        if self.path:
            with os.fdopen(open_file(self.path, os.O_WRONLY | os.O_APPEND), "a") as handle:
                handle.write("{} {}: {}\n".format(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), self.name, text))

    def progress(self, done, total, started, resumed_from, force=False):
        now = time.monotonic()
        if not force and now - self.last < PROGRESS_EVERY_S:
            return
        self.last = now
        rate = (done - resumed_from) / max(now - started, 1e-6)
        if total:
            eta = (total - done) / rate if rate > 0 else float("inf")
            self.line("{} / {} bytes ({:.1f}%), {:.1f} MB/s, ETA {}".format(
                done, total, 100.0 * done / total, rate / 1e6, "{:.0f} s".format(eta) if eta != float("inf") else "?"))
        else:
            self.line("{} bytes, {:.1f} MB/s".format(done, rate / 1e6))


def origin(url):
    """(scheme, host, port) of a URL, its scheme's default port filled in; None when the port can't be read."""
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), port or {"http": 80, "https": 443}.get(scheme)


class _AuthorizationOnlyToItsOrigin(urllib.request.HTTPRedirectHandler):
    """Follow redirects; the Authorization header follows only to the same scheme, host and port. Hugging Face
    redirects to a signed CDN URL that needs no token, and an https -> http redirect on the same host would
    send the token in clear text (the netloc alone is the same for https://h/ and http://h/)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and (origin(newurl) is None or origin(newurl) != origin(req.full_url)):
            for key in list(new.headers):
                if key.lower() == "authorization":
                    del new.headers[key]
        return new


OPENER = urllib.request.build_opener(_AuthorizationOnlyToItsOrigin)


def open_url(model, start=0, method="GET", timeout=60):
    request = urllib.request.Request(model["url"], method=method, headers={"User-Agent": "comfyinfra-model-sync"})
    if model.get("token"):
        request.add_header("Authorization", "Bearer " + model["token"])
    if start:
        request.add_header("Range", "bytes={}-".format(start))
    return OPENER.open(request, timeout=timeout)


def remote_size(manifest, model):
    """Declared size, else the server's Content-Length (HEAD), for the disk-space pre-check."""
    if model.get("size"):
        return model["size"]
    try:
        with open_url(model, method="HEAD") as response:
            length = response.headers.get("Content-Length")
            return int(length) if length else 0
    except (OSError, urllib.error.URLError) as error:
        raise SyncError("model {} on host {}: cannot ask {} for its size: {}".format(
            model["name"], manifest["host"], model["url"], error))


def _writer(handle, digest, chunks, failure):
    """Second thread: write and hash chunks while the first keeps reading the socket."""
    try:
        while True:
            chunk = chunks.get()
            if chunk is None:
                return
            handle.write(chunk)
            digest.update(chunk)
    except Exception as error:  # surfaced by the reader
        failure.append(error)
        while chunks.get() is not None:
            pass


def announced_length(response):
    try:
        return int(response.headers.get("Content-Length"))
    except (TypeError, ValueError):
        return None


def fetch_once(model, partial, digest, total, log, started, resumed_from):
    """One HTTP attempt, appending to partial from its current size. Returns the new size.

    With a declared size (total), a response announcing another length fails before its body is read, and the
    body is read up to the size and one byte more: that byte, if it comes, fails the model unwritten (_WrongSize)
    rather than filling the disk with whatever the server streams."""
    offset = os.lstat(partial).st_size if os.path.lexists(partial) else 0
    response = open_url(model, start=offset)
    with response:
        if offset and response.status != 206:  # the server ignored Range: start over
            log.line("server does not resume (HTTP {}): starting again from 0".format(response.status))
            raise _Restart()
        length = announced_length(response)
        if total and length is not None and offset + length != total:
            raise _WrongSize("the server announces {} bytes, the catalog declares {}".format(offset + length, total))
        chunks, failure = queue.Queue(maxsize=16), []
        appending = os.fdopen(open_file(partial, os.O_WRONLY | os.O_APPEND), "ab") if offset else None
        with appending or create_file(partial, BLOB_MODE) as handle:
            writer = threading.Thread(target=_writer, args=(handle, digest, chunks, failure), daemon=True)
            writer.start()
            done = offset
            try:
                while True:
                    chunk = response.read(min(CHUNK, total - done + 1) if total else CHUNK)
                    if not chunk:
                        break
                    if total and done + len(chunk) > total:
                        raise _WrongSize("the server sent more than the declared {} bytes".format(total))
                    chunks.put(chunk)
                    done += len(chunk)
                    log.progress(done, total, started, resumed_from)
            finally:
                chunks.put(None)
                writer.join()
            if failure:
                raise failure[0]
            handle.flush()
            os.fsync(handle.fileno())
    if length is not None and done - offset < length:
        raise IOError("connection closed after {} of {} bytes".format(done - offset, length))
    return done


class _Restart(Exception):
    pass


class _WrongSize(Exception):
    """The server's file is not the declared size: not worth retrying."""


def download(manifest, model, log):
    blob = blob_path(manifest, model)
    partial = blob + ".partial"
    total = model.get("size") or 0
    digest = hashlib.sha256()
    if os.path.lexists(partial):  # resume: the bytes we have are hashed once, then the rest streams in
        st = os.lstat(partial)
        if not ours(st) or (total and st.st_size > total):
            os.unlink(partial)
        else:
            log.line("resuming at byte {}".format(st.st_size))
            with os.fdopen(open_file(partial, os.O_RDONLY), "rb") as handle:
                for chunk in iter(lambda: handle.read(CHUNK * 4), b""):
                    digest.update(chunk)
    started = time.monotonic()
    resumed_from = os.lstat(partial).st_size if os.path.lexists(partial) else 0
    attempt = 0
    while True:
        try:
            done = fetch_once(model, partial, digest, total, log, started, resumed_from)
            break
        except _Restart:
            os.unlink(partial)
            digest = hashlib.sha256()
        except _WrongSize as error:
            if os.path.lexists(partial):
                os.unlink(partial)
            raise SyncError("model {} on host {}: {} ({}); the download was discarded. Check the model's url and "
                            "size in model_catalog".format(model["name"], manifest["host"], error, model["url"]))
        except urllib.error.HTTPError as error:
            if error.code in (401, 403, 404, 410):
                raise SyncError("model {} on host {}: HTTP {} from {}{}".format(
                    model["name"], manifest["host"], error.code, model["url"],
                    " (check the token and that its account accepted the model's terms)" if error.code in (401, 403) else ""))
            attempt = _backoff(attempt, model, manifest, log, error)
        except (OSError, urllib.error.URLError, http.client.HTTPException) as error:
            attempt = _backoff(attempt, model, manifest, log, error)
    log.progress(done, total, started, resumed_from, force=True)
    got = digest.hexdigest()
    if total and done != total:
        os.unlink(partial)
        raise SyncError("model {} on host {}: size mismatch: expected {} bytes, got {}; the download was discarded".format(
            model["name"], manifest["host"], total, done))
    if got != model["sha256"]:
        os.unlink(partial)
        raise SyncError("model {} on host {}: sha256 mismatch: expected {}, got {} ({}); the download was discarded".format(
            model["name"], manifest["host"], model["sha256"], got, model["url"]))
    os.replace(partial, blob)
    log.line("verified sha256 {} ({} bytes)".format(got, done))


def _backoff(attempt, model, manifest, log, error):
    attempt += 1
    if attempt > RETRIES:
        raise SyncError("model {} on host {}: download failed after {} attempts: {} (the partial file is kept; "
                        "the next deploy resumes it)".format(model["name"], manifest["host"], RETRIES + 1, error))
    delay = min(2 ** (attempt - 1), 30)
    log.line("attempt {} failed ({}); retrying in {} s".format(attempt, error, delay))
    time.sleep(delay)
    return attempt


# --- sync -----------------------------------------------------------------------------------------


def free_bytes(path):
    override = os.environ.get("COMFYINFRA_FREE_BYTES")  # tests and dry estimates only
    if override:
        return int(override)
    usage = shutil.disk_usage(path)
    return usage.free


def sync_one(manifest, model):
    log = ProgressLog(os.path.join(manifest["logs"], model["name"] + ".log"), model["name"])
    blob = blob_path(manifest, model)
    if not marker_matches(blob, model) and not adopt_existing(manifest, model, log):
        download(manifest, model, log)
    for dest in model["dests"]:
        if not linked(blob, dest):
            link_into_place(blob, dest)
    write_marker(blob, model["sha256"])  # last: each link made above changed the blob's ctime
    log.line("in place: {}".format(", ".join(model["dests"])))
    return model["name"]


def check_tokens(manifest):
    """Refuse a token that can't go into an HTTP header, before any request, without showing it."""
    for model in manifest["models"]:
        token = model.get("token")
        if token is not None and not (isinstance(token, str) and BEARER_TOKEN.fullmatch(token)):
            raise SyncError("model {} on host {}: its token contains a space, a control character (a trailing "
                            "newline?) or a non-ASCII character; nothing was downloaded. Export the variable named "
                            "in the model's token_env without it".format(model["name"], manifest["host"]))


def without_tokens(text, manifest):
    """text with every token of the manifest replaced by <token>, also as repr() would quote it (str or bytes)."""
    for model in manifest.get("models", []):
        token = model.get("token")
        if isinstance(token, str) and token:
            forms = {token, token.strip(), repr(token)[1:-1], repr(token.encode("utf-8", "replace"))[2:-1]}
            for form in sorted(filter(None, forms), key=len, reverse=True):
                text = text.replace(form, "<token>")
    return text


def sync(manifest):
    check_tokens(manifest)
    os.makedirs(manifest["blobs"], exist_ok=True)
    models = manifest["models"]
    # One blob per sha256: a file declared twice is fetched once.
    unique = {}
    for model in models:
        unique.setdefault(model["sha256"], dict(model, dests=[]))["dests"].extend(model["dests"])
    work = [m for m in unique.values() if model_state(manifest, m) != "ok"]
    to_fetch = [m for m in work if not os.path.exists(blob_path(manifest, m)) and not any(os.path.isfile(d) for d in m["dests"])]
    needed = 0
    for model in to_fetch:
        partial = blob_path(manifest, model) + ".partial"
        needed += max(remote_size(manifest, model) - (os.path.getsize(partial) if os.path.exists(partial) else 0), 0)
    free = free_bytes(manifest["blobs"])
    if needed > free:
        raise SyncError("host {}: models need {} more bytes ({:.1f} GiB) but {} has {} free ({:.1f} GiB); nothing was "
                        "downloaded. Free space, or move models_dir to a bigger volume.".format(
                            manifest["host"], needed, needed / 2**30, manifest["blobs"], free, free / 2**30))
    errors = []
    with ThreadPoolExecutor(max_workers=max(1, int(manifest.get("parallel", 2)))) as pool:
        futures = [pool.submit(sync_one, manifest, model) for model in work]
        for future in futures:
            try:
                print("synced: " + future.result())
            except SyncError as error:
                errors.append(str(error))
    if errors:
        raise SyncError("\n".join(errors))


def main(argv):
    if len(argv) >= 2 and argv[1] == "check":
        manifest = json.loads(argv[2])
        print(json.dumps(check(manifest), sort_keys=True))
        return 0
    if len(argv) >= 2 and argv[1] == "sync":
        manifest = json.loads(sys.stdin.read())
        try:
            sync(manifest)
        except SyncError as error:
            print("comfyinfra: " + str(error), file=sys.stderr)
            return 1
        except Exception:  # a bug or an unforeseen failure: its traceback, minus the tokens it may quote
            print("comfyinfra: model sync failed on host {}:\n{}".format(
                manifest.get("host"), without_tokens(traceback.format_exc(), manifest)), file=sys.stderr)
            return 1
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
