#!/usr/bin/env python3
"""comfyinfra model sync: runs ON the ComfyUI host (stdlib only, Python >= 3.8).

Uploaded by the `models` role and run as the service user. Reads a JSON manifest:

    check MANIFEST_JSON     print each model's state from stat() and its marker only (never reads a model)
    sync  < MANIFEST_JSON   make every model present and verified; the manifest may carry tokens, so it
                            comes on stdin, never in argv

Layout: every file is stored once as a blob, `<blobs>/<sha256>`, and hard-linked to each declared
path (two folders declaring the same sha256 share one copy). Next to a blob, `<sha256>.verified`
records (sha256, size, mtime_ns, inode) after a full verification; a later run compares that with
stat() alone, and re-verifies only a file that changed behind our back.

A download goes to `<blobs>/<sha256>.partial` (same filesystem: the final rename is atomic), resumes
with an HTTP Range request after an interruption, retries with backoff, hashes while it streams (a
second thread, so hashing overlaps the transfer) and is renamed into place only once its size and
sha256 are right. A wrong file never reaches a final path.
"""

import hashlib
import http.client
import json
import os
import queue
import shutil
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

CHUNK = 1 << 20
RETRIES = 5
PROGRESS_EVERY_S = 2.0


class SyncError(Exception):
    """A model could not be made right; the message names model, host, and what went wrong."""


# --- state: stat + marker only ---------------------------------------------------------------


def blob_path(manifest, model):
    return os.path.join(manifest["blobs"], model["sha256"])


def read_marker(blob):
    try:
        with open(blob + ".verified") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def marker_matches(blob, sha256):
    """True when the blob is unchanged since it was verified: same size, mtime and inode (no read)."""
    marker = read_marker(blob)
    try:
        st = os.stat(blob)
    except OSError:
        return False
    return bool(marker) and marker.get("sha256") == sha256 and [marker.get("size"), marker.get("mtime_ns"),
                                                                 marker.get("inode")] == [st.st_size, st.st_mtime_ns, st.st_ino]


def write_marker(blob, sha256):
    st = os.stat(blob)
    record = {"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino,
              "verified_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    tmp = blob + ".verified.tmp"
    with open(tmp, "w") as handle:
        json.dump(record, handle)
    os.replace(tmp, blob + ".verified")


def model_state(manifest, model):
    """'ok' | 'relink' (blob verified, a path is missing or not our blob) | 'verify' (blob changed) | 'fetch'."""
    blob = blob_path(manifest, model)
    if not os.path.exists(blob):
        return "fetch"
    if not marker_matches(blob, model["sha256"]):
        return "verify"
    ino = os.stat(blob).st_ino
    for dest in model["dests"]:
        try:
            if os.stat(dest).st_ino != ino:
                return "relink"
        except OSError:
            return "relink"
    return "ok"


def check(manifest):
    return {model["name"]: model_state(manifest, model) for model in manifest["models"]}


# --- verification and placement ---------------------------------------------------------------


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK * 4), b""):
            digest.update(chunk)
    return digest.hexdigest()


def link_into_place(blob, dest):
    """Hard-link the blob to dest atomically (link to a temp name, then rename over dest)."""
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    tmp = "{}.comfyinfra-link".format(dest)
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.link(blob, tmp)
    os.replace(tmp, dest)


def adopt_existing(manifest, model, log):
    """Bytes already on disk (a blob that changed since it was verified, or a declared path that is not
    our blob) are kept if, and only if, they hash right; a wrong blob is removed. Each inode is read once."""
    blob = blob_path(manifest, model)
    seen = set()
    for path in [blob] + list(model["dests"]):
        try:
            st = os.stat(path)
        except OSError:
            continue
        if st.st_ino in seen or not os.path.isfile(path):
            continue
        seen.add(st.st_ino)
        log.line("verifying {} (changed since it was verified, or not verified yet)".format(path))
        got = sha256_of(path)
        if got == model["sha256"]:
            if path != blob:
                link_into_place(path, blob)
            write_marker(blob, model["sha256"])
            return True
        log.line("{} has sha256 {}, expected {}: it will be replaced".format(path, got, model["sha256"]))
        if path == blob:
            for stale in (blob, blob + ".verified"):
                if os.path.exists(stale):
                    os.unlink(stale)
    return False


# --- download -------------------------------------------------------------------------------------


class ProgressLog:
    """Per-model progress file on the host: bytes, rate, ETA every few seconds (never the URL's secrets)."""

    def __init__(self, path, name):
        self.path, self.name = path, name
        self.last = 0.0
        if path:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            open(path, "w").close()

    def line(self, text):
        if self.path:
            with open(self.path, "a") as handle:
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


class _KeepAuthOnSameHost(urllib.request.HTTPRedirectHandler):
    """Follow redirects; drop the Authorization header when the redirect leaves the original host
    (Hugging Face redirects to a signed CDN URL that needs no token)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urllib.parse.urlsplit(newurl).netloc != urllib.parse.urlsplit(req.full_url).netloc:
            for key in list(new.headers):
                if key.lower() == "authorization":
                    del new.headers[key]
        return new


OPENER = urllib.request.build_opener(_KeepAuthOnSameHost)


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


def fetch_once(model, partial, digest, total, log, started, resumed_from):
    """One HTTP attempt, appending to partial from its current size. Returns the new size."""
    offset = os.path.getsize(partial) if os.path.exists(partial) else 0
    response = open_url(model, start=offset)
    with response:
        if offset and response.status != 206:  # the server ignored Range: start over
            log.line("server does not resume (HTTP {}): starting again from 0".format(response.status))
            raise _Restart()
        mode = "ab" if offset else "wb"
        chunks, failure = queue.Queue(maxsize=16), []
        with open(partial, mode) as handle:
            writer = threading.Thread(target=_writer, args=(handle, digest, chunks, failure), daemon=True)
            writer.start()
            done = offset
            try:
                while True:
                    chunk = response.read(CHUNK)
                    if not chunk:
                        break
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
    expected = response.headers.get("Content-Length")
    if expected is not None and done - offset < int(expected):
        raise IOError("connection closed after {} of {} bytes".format(done - offset, expected))
    return done


class _Restart(Exception):
    pass


def download(manifest, model, log):
    blob = blob_path(manifest, model)
    partial = blob + ".partial"
    total = model.get("size") or 0
    digest = hashlib.sha256()
    if os.path.exists(partial):  # resume: the bytes we have are hashed once, then the rest streams in
        size = os.path.getsize(partial)
        if total and size > total:
            os.unlink(partial)
        else:
            log.line("resuming at byte {}".format(size))
            with open(partial, "rb") as handle:
                for chunk in iter(lambda: handle.read(CHUNK * 4), b""):
                    digest.update(chunk)
    started = time.monotonic()
    resumed_from = os.path.getsize(partial) if os.path.exists(partial) else 0
    attempt = 0
    while True:
        try:
            done = fetch_once(model, partial, digest, total, log, started, resumed_from)
            break
        except _Restart:
            os.unlink(partial)
            digest = hashlib.sha256()
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
    write_marker(blob, model["sha256"])
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
    if not marker_matches(blob, model["sha256"]) and not adopt_existing(manifest, model, log):
        download(manifest, model, log)
    ino = os.stat(blob).st_ino
    for dest in model["dests"]:
        if not os.path.exists(dest) or os.stat(dest).st_ino != ino:
            link_into_place(blob, dest)
    log.line("in place: {}".format(", ".join(model["dests"])))
    return model["name"]


def sync(manifest):
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
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
