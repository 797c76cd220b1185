"""What a user declares for one host, validated before anything connects.

`HostSpec` is the single reference for every knob a ComfyUI host has: inventory files and
`group_data/*.py` set these names as plain module-level variables, pyinfra merges them per host
(host > group > all), and `comfyinfra.preflight` validates the merged data of every host here
before the first SSH connection. Field descriptions are the user documentation
(`python -m comfyinfra.schema` prints the JSON schema).
"""

from __future__ import annotations

import ipaddress
import re
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin
from urllib.parse import parse_qsl, urlsplit

from croniter import croniter
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from comfyinfra.quoting import unsafe_character

# Every pattern here is used with fullmatch, never with match/search and `$` (which also matches before a
# trailing newline: "HF_TOKEN\n" passed once and printed a secret into a log); \d with re.ASCII (else it
# matches any Unicode digit, which int() then reads).
FULL_COMMIT = re.compile(r"[0-9a-f]{40}")
ABBREVIATED_COMMIT = re.compile(r"[0-9a-fA-F]{7,39}")
# A release tag such as v0.3.64, 0.3.64 or 1.2.0-rc1; anything else must be spelled refs/tags/<name>.
TAG_LIKE = re.compile(r"v?\d+(\.\d+)+([-.+][0-9A-Za-z.]+)?", re.ASCII)
# What a ref (commit, tag, branch) may hold: it reaches git's command line and the unit's Description=.
REF_CHARACTERS = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/+-]*")
NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
POSIX_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
VERSION = re.compile(r"\d+\.\d+\.\d+", re.ASCII)
GPU_UUID_PREFIX = re.compile(r"GPU-[0-9a-f-]*")  # nvidia-smi's UUID (GPU-3f1c2a4e-...) or a prefix of it
PEP440_VERSION = r"[A-Za-z0-9.*+!_-]+"
PIP_REQUIREMENT = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._-]+\])? *([<>=!~]=?{PEP440_VERSION}"
                             rf"(, *[<>=!~]=?{PEP440_VERSION})*)?")

# hide_input_in_errors: a ValidationError printed as a whole never echoes inventory values (secrets among them);
# comfyinfra.validate words each problem itself.
STRICT = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


def _unsafe_text(value: Any, where: str, show_keys: bool, nested_models: bool) -> str | None:
    """Where the first string in a raw value (lists, dicts and their keys, at any depth) holds a line break or
    another control character, and which one; never the text itself, which may be a secret. With nested_models,
    dicts inside the value are models' input, which those models check themselves (naming the exact field)."""
    if isinstance(value, str):
        problem = unsafe_character(value)
        return f"{where or 'the value'} holds {problem}" if problem else None
    prefix = f"{where}: " if where else ""
    children: list[tuple[str, Any]] = []
    if isinstance(value, (list, tuple)):
        children = [(f"{where}[{index}]", item) for index, item in enumerate(value)]
    elif isinstance(value, dict):
        for number, (key, item) in enumerate(value.items(), start=1):
            named = show_keys and isinstance(key, str) and NODE_NAME.fullmatch(key)
            children.append((f"{prefix}the key of entry {number}", key))
            children.append((f"{where}.{key}".lstrip(".") if named else f"{prefix}the value of entry {number}", item))
    for place, child in children:
        if nested_models and isinstance(child, dict):
            continue  # a nested model's input: that model checks it, naming the exact field
        found = _unsafe_text(child, place, show_keys, nested_models)
        if found:
            return found
    return None


def _holds_models(annotation: Any) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return any(_holds_models(arg) for arg in get_args(annotation))


class SpecModel(BaseModel):
    """Every part of the spec: unknown fields refused, frozen, and no line break or other control character in
    any string of any field (each one ends up in a file or a command line, where a newline starts a directive)."""

    model_config = STRICT

    @field_validator("*", mode="before")
    @classmethod
    def _one_line(cls, value: Any, info: ValidationInfo) -> Any:
        annotation = cls.model_fields[info.field_name].annotation
        nested_models = _holds_models(annotation)
        if nested_models and isinstance(value, dict) and get_origin(annotation) is not dict:
            return value  # one model's input (torch, gpu, pip_sources, ...): it checks its own fields
        problem = _unsafe_text(value, "", info.field_name != "service_secrets", nested_models)
        if problem:
            raise ValueError(f"{problem.strip()}; allowed: text on one line without control characters (no newline, "
                             "carriage return, tab, NUL or DEL)")
        return value


class HostKind(str, Enum):
    wsl = "wsl"
    runpod = "runpod"
    dgx = "dgx"
    linux = "linux"


class RefKind(str, Enum):
    commit = "commit"
    tag = "tag"
    branch = "branch"


def classify_ref(ref: str) -> RefKind:
    """How a git ref string is read: a 40-hex commit, a tag, or (anything else) a branch."""
    if FULL_COMMIT.fullmatch(ref):
        return RefKind.commit
    if ref.startswith("refs/tags/") or TAG_LIKE.fullmatch(ref):
        return RefKind.tag
    return RefKind.branch


def tag_name(ref: str) -> str:
    return ref.removeprefix("refs/tags/")


def _check_ref(ref: str, allow_branch: bool, allow_field: str = "allow_branch") -> str:
    if not REF_CHARACTERS.fullmatch(ref) or ".." in ref:
        raise ValueError(f"{ref!r}: allowed in a ref: letters, digits and . _ / + - (starting with a letter, digit or "
                         "_; no '..'), e.g. a 40-hex commit, v0.3.64 or refs/tags/<name>")
    if ABBREVIATED_COMMIT.fullmatch(ref) and not FULL_COMMIT.fullmatch(ref) and not TAG_LIKE.fullmatch(ref):
        if len(ref) == 40:
            raise ValueError(f"{ref!r}: commits are written in lowercase hex")
        raise ValueError(
            f"{ref!r} looks like an abbreviated commit; allowed: the full 40-hex commit "
            "(git rev-parse <ref>), a tag such as v0.3.64 or refs/tags/<name>"
        )
    if classify_ref(ref) is RefKind.branch and not allow_branch:
        raise ValueError(
            f"{ref!r} is a branch, which moves under you; allowed: a full 40-hex commit or a tag "
            f"(v0.3.64, refs/tags/<name>). To track a branch anyway set {allow_field}=True"
        )
    return ref


def redacted(text: str) -> str:
    """How a value that may be a secret is shown: its first characters and its length, e.g. 'hf_a…' (37 characters)."""
    shown = text[:min(4, len(text) // 4)]
    return f"'{shown if shown.isprintable() else ''}…' ({len(text)} characters)"


# Paths reach root's shell, unit files, supervisord, cron, YAML and logrotate: only characters none of them
# gives a meaning to (no space, quote, $, %, #, comma, ...).
PATH_CHARACTERS = re.compile(r"[A-Za-z0-9._/+-]+")


def _check_abs_path(value: str) -> str:
    """An absolute path in PATH_CHARACTERS, written the one way it is read (what is checked is what is used)."""
    odd = sorted({char for char in value if not PATH_CHARACTERS.fullmatch(char)})
    if odd:
        raise ValueError(f"{value!r} holds {' '.join(map(repr, odd))}; allowed in paths: letters, digits and "
                         ". _ / + - (e.g. /opt/comfyui)")
    if not value.startswith("/"):
        raise ValueError(f"{value!r} is relative; allowed: an absolute path such as /opt/comfyui")
    parts = value.split("/")[1:]
    if ".." in parts:
        raise ValueError(f"{value!r} contains '..'; allowed: an absolute path without '..'")
    if value != "/" and ("" in parts or "." in parts):
        normal = "/" + "/".join(part for part in parts if part not in ("", "."))
        raise ValueError(f"{value!r} is not normalised ('//', '/./' or a trailing '/'); allowed: the same path "
                         f"written as {normal!r}")
    return value


# The deploy creates install_root and models_dir, sets their owner and mode and lets the service write below
# them: never the system's own trees (nor anything under them), nor a shared directory itself.
SYSTEM_TREES = ("/etc", "/usr", "/bin", "/sbin", "/lib", "/boot", "/dev", "/proc", "/sys", "/run")  # /lib: /lib*
SHARED_DIRECTORIES = ("/", "/var", "/opt", "/home", "/root", "/srv", "/tmp", "/mnt", "/media", "/var/tmp", "/var/lib",
                      "/var/log", "/var/cache", "/var/opt", "/var/spool")
INSTALL_PATH_ALLOWED = "allowed: a directory of its own such as /opt/comfyui, /srv/comfyui or /var/lib/comfyui"


def _check_install_path(value: str) -> str:
    path = _check_abs_path(value)
    top = "/" + path.split("/")[1]
    if top in SYSTEM_TREES or top.startswith("/lib"):
        raise ValueError(f"{path!r} is in the system directory {top}, which the deploy must not take over "
                         f"(it creates the directory, sets its owner and lets the service write below it); "
                         f"{INSTALL_PATH_ALLOWED}")
    if path in SHARED_DIRECTORIES or path.rsplit("/", 1)[0] == "/home":
        what = "a user's home directory" if path.rsplit("/", 1)[0] == "/home" else "a shared system directory"
        raise ValueError(f"{path!r} is {what}, which the deploy must not take over (it sets the directory's owner "
                         f"and lets the service write below it); {INSTALL_PATH_ALLOWED}")
    return path


def _check_repo_url(value: str) -> str:
    if value.startswith("/"):
        return _check_abs_path(value)
    if re.fullmatch(r"[\w.-]+@[\w.-]+:[\w./~-]+", value):  # scp-like git@host:owner/repo.git
        return value
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http", "ssh", "git", "file"):
        raise ValueError(
            f"{value!r}: allowed: an https://, ssh://, git@host:path or file:// URL, or an absolute path"
        )
    if parts.password or (parts.username and parts.scheme in ("https", "http")):
        raise ValueError(
            "the URL carries credentials, which would show in process lists and logs; "
            "allowed: a URL without credentials (use an SSH key, or ~/.netrc / a git credential helper on the host)"
        )
    return value


# What a package index URL may hold, checked on the value as given: urlsplit() quietly drops tabs and newlines,
# and pip.conf then read a newline in index_url as an `[install]` section that turned the torch constraint off.
URL_CHARACTERS = re.compile(r"[A-Za-z0-9._~:/?@&+,;=%\[\]-]+")


def _check_index_url(value: str) -> str:
    odd = sorted({char for char in value if not URL_CHARACTERS.fullmatch(char)})
    if odd:  # the URL itself is not shown: its query may carry a token
        raise ValueError(f"the URL holds {' '.join(map(repr, odd))}; allowed in URLs: letters, digits and "
                         ". _ ~ : / ? @ & + , ; = % [ ] - (percent-encode anything else, e.g. %20 for a space)")
    if re.search(r"%(?![0-9A-Fa-f]{2})", value):
        raise ValueError("the URL holds a '%' that is not a percent-encoding; allowed: %XX escapes such as %20")
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http", "file"):
        raise ValueError(f"{value!r}: allowed: an https://, http:// or file:// URL")
    if parts.scheme != "file" and not parts.hostname:
        raise ValueError(f"{value!r} names no host; allowed: a URL such as https://pypi.org/simple")
    if parts.username or parts.password:
        raise ValueError(
            "package index URLs must not carry credentials (they would show in process lists); "
            "allowed: a URL without user:password (put credentials in ~/.netrc on the host)"
        )
    return value


def _check_find_link(value: str) -> str:
    if value.startswith("/"):
        return _check_abs_path(value)
    if urlsplit(value).scheme not in ("https", "http", "file"):
        raise ValueError(f"{value!r}: allowed: an absolute directory on the host, or an https:// or file:// URL")
    return _check_index_url(value)


# Transports that neither authenticate the server nor protect what they carry: anyone on the network path
# can hand the host other code (a ComfyUI, a node, a torch wheel of their choosing).
INSECURE_SCHEMES = ("http", "git")


def _check_transport(url: str, allow_insecure: bool, allow_field: str, allowed: str) -> str:
    scheme = urlsplit(url).scheme if "://" in url else ""
    if scheme in INSECURE_SCHEMES and not allow_insecure:
        raise ValueError(
            f"{url!r} uses {scheme}://, which neither authenticates the server nor protects the download (anyone on "
            f"the network path can substitute what the host runs as root); allowed: {allowed}. For a private mirror "
            f"on a network you trust set {allow_field}=True"
        )
    return url


SECURE_REPO = "an https://, ssh://, git@host:path or file:// URL, or an absolute path"
SECURE_INDEX = "an https:// or file:// URL (find_links: also an absolute directory)"

AbsPath = Annotated[str, AfterValidator(_check_abs_path)]
InstallPath = Annotated[str, AfterValidator(_check_install_path)]
RepoUrl = Annotated[str, AfterValidator(_check_repo_url)]
IndexUrl = Annotated[str, AfterValidator(_check_index_url)]
FindLink = Annotated[str, AfterValidator(_check_find_link)]


class TorchPins(SpecModel):
    """The PyTorch set. Only the build variant (cu128, cu130, cpu, ...) differs per host."""

    model_config = STRICT
    torch: str = Field(description="torch release, e.g. 2.9.1 (no +variant: the plan picks it)")
    torchvision: str | None = Field(None, description="matching torchvision release (torch 2.x.y -> 0.(x+15).y)")
    torchaudio: str | None = Field(None, description="matching torchaudio release (same as torch up to 2.11)")
    variant: str | None = Field(
        None,
        description="force a build variant (cpu, cu126, cu128, cu130, ...), or 'pypi' for the default index's "
        "unlabelled build (torch==X.Y.Z from pip's configured sources); default: chosen from GPU facts",
    )

    @field_validator("torch", "torchvision", "torchaudio")
    @classmethod
    def _plain_version(cls, value: str | None) -> str | None:
        if value is not None and not VERSION.fullmatch(value):
            raise ValueError(f"{value!r}: allowed: a plain release X.Y.Z such as 2.9.1 (the +variant is chosen per host)")
        return value

    @field_validator("variant")
    @classmethod
    def _variant(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"cpu|pypi|cu\d{3}", value):
            raise ValueError(f"{value!r}: allowed: cpu, pypi or cuXYZ such as cu128")
        return value

    @model_validator(mode="after")
    def _matching_set(self) -> TorchPins:
        major, minor, patch = (int(p) for p in self.torch.split("."))
        if self.torchvision is not None:
            expected = f"0.{minor + 15}.{patch}" if major == 2 else None
            if expected and self.torchvision != expected:
                raise ValueError(
                    f"torchvision {self.torchvision} does not match torch {self.torch}; allowed: torchvision {expected}"
                )
        if self.torchaudio is not None:
            ta_major, ta_minor, _ = (int(p) for p in self.torchaudio.split("."))
            # torchaudio tracks torch until 2.11, then stays on 2.11.x (maintenance mode).
            ok = (ta_major, ta_minor) == (major, minor) or ((major, minor) >= (2, 12) and (ta_major, ta_minor) == (2, 11))
            if not ok:
                allowed = f"{major}.{minor}.x" + (" or 2.11.x" if (major, minor) >= (2, 12) else "")
                raise ValueError(
                    f"torchaudio {self.torchaudio} does not match torch {self.torch}; allowed: torchaudio {allowed}"
                )
        return self


class PipSources(SpecModel):
    """Where pip gets packages on the host; defaults are PyPI plus the PyTorch index the plan picks."""

    model_config = STRICT
    allow_insecure_transport: bool = Field(
        False, description="accept http:// indexes and find_links, which anyone on the network path can answer in "
        "the index's place (other wheels, another torch); only for a private mirror on a network you trust")
    torch_index_url: IndexUrl | None = Field(
        None, description="index for the torch set; default https://download.pytorch.org/whl/<variant>"
    )
    index_url: IndexUrl | None = Field(None, description="replaces PyPI for everything else (a mirror)")
    extra_index_urls: list[IndexUrl] = Field(default_factory=list, description="extra indexes (pip --extra-index-url)")
    find_links: list[FindLink] = Field(
        default_factory=list, description="wheelhouse directories (absolute) or URLs on the host (pip --find-links), "
        "for offline hosts"
    )
    no_index: bool = Field(
        False, description="use no index at all, only find_links (air-gapped hosts: a wheelhouse with the torch set "
        "and every requirement, README 'Air-gapped hosts')")

    @field_validator("torch_index_url", "index_url", "extra_index_urls", "find_links")
    @classmethod
    def _secure_transport(cls, value: str | list[str] | None, info: ValidationInfo) -> str | list[str] | None:
        for url in [value] if isinstance(value, str) else value or []:
            _check_transport(url, info.data.get("allow_insecure_transport", False),
                             "pip_sources.allow_insecure_transport", SECURE_INDEX)
        return value

    @model_validator(mode="after")
    def _offline(self) -> PipSources:
        if self.no_index:
            indexes = [name for name in ("torch_index_url", "index_url", "extra_index_urls") if getattr(self, name)]
            if indexes:
                raise ValueError(f"no_index is set, so {', '.join(indexes)} would never be used; allowed: no_index with "
                                 "find_links only, or indexes without no_index")
            if not self.find_links:
                raise ValueError("no_index needs find_links: the wheelhouse directories on the host that hold the torch "
                                 "set and every requirement")
        return self


class CustomNode(SpecModel):
    """A ComfyUI custom node checked out into custom_nodes/<name> at a pinned commit."""

    model_config = STRICT
    name: str = Field(description="directory name under custom_nodes/")
    allow_insecure_transport: bool = Field(
        False, description="accept an http:// or git:// repo, which anyone on the network path can answer in the "
        "server's place (with other code, run by ComfyUI); only for a private mirror on a network you trust")
    repo: RepoUrl = Field(description="git URL (https://, ssh://, git@host:path, file://) or absolute path of the "
                          "node's repository")
    allow_branch: bool = Field(False, description="accept a branch name for ref (not reproducible)")
    ref: str = Field(description="full 40-hex commit or a tag; a branch only with allow_branch=True")
    install_requirements: bool = Field(True, description="pip-install the node's requirements.txt under the torch constraints")
    allow_requirement_options: bool = Field(
        False, description="let the node's requirements.txt use pip option lines (--index-url, --extra-index-url, "
        "--find-links, --trusted-host, -e, -r/-c includes, ...) and URL, path or 'name @ URL' requirements. Default: "
        "the host refuses such a file before pip runs, naming the line: they fetch packages from outside pip_sources "
        "(that is how a node's requirement once replaced torch's files)")
    node_classes: list[str] = Field(default_factory=list, description="node classes it registers; the smoke suite "
                                    "checks each is in /object_info (without them: that some class comes from it)")

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not NODE_NAME.fullmatch(value) or value in (".", ".."):
            raise ValueError(
                f"{value!r} is not a safe directory name; allowed: letters, digits, '.', '_', '-' "
                "(starting with a letter or digit, at most 100 characters)"
            )
        return value

    @field_validator("ref")
    @classmethod
    def _pinned(cls, value: str, info: ValidationInfo) -> str:
        return _check_ref(value, info.data.get("allow_branch", False))

    @field_validator("repo")
    @classmethod
    def _secure_repo(cls, value: str, info: ValidationInfo) -> str:
        return _check_transport(value, info.data.get("allow_insecure_transport", False), "allow_insecure_transport",
                                SECURE_REPO)


class DeclaredGpu(SpecModel):
    """A GPU as the inventory declares it (used offline; nvidia-smi facts win when present)."""

    model_config = STRICT
    name: str = Field(description="as nvidia-smi prints it, e.g. 'NVIDIA GeForce RTX 3090'")
    vram_mib: int = Field(gt=0, description="memory.total in MiB (GB10: system MemTotal)")
    compute_capability: str = Field(description="e.g. '8.6'")
    driver_version: str | None = Field(None, description="e.g. '570.124.06' (WSL: the Windows driver number)")

    @field_validator("compute_capability")
    @classmethod
    def _cc(cls, value: str) -> str:
        if not re.fullmatch(r"\d{1,2}\.\d", value, re.ASCII):
            raise ValueError(f"{value!r}: allowed: major.minor such as 8.6 or 12.0")
        return value

    @field_validator("driver_version")
    @classmethod
    def _driver(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"\d+(\.\d+){1,3}", value, re.ASCII):
            raise ValueError(f"{value!r}: allowed: a driver version such as 570.124.06")
        return value


# Model folders ComfyUI 0.3.64 knows (GET /models), its legacy aliases (clip, unet), and the folders
# popular custom nodes read (insightface, ipadapter, liveportrait, ...). Not custom_nodes: ComfyUI
# would scan (and require) <models_dir>/custom_nodes for code.
MODEL_FOLDERS = (
    "checkpoints", "configs", "loras", "vae", "text_encoders", "diffusion_models", "clip_vision", "style_models",
    "embeddings", "diffusers", "vae_approx", "controlnet", "gligen", "upscale_models",
    "hypernetworks", "photomaker", "classifiers", "model_patches", "audio_encoders", "clip", "unet",
    "insightface", "ipadapter", "liveportrait", "instantid", "pulid", "sams", "ultralytics",
)
SHA256 = re.compile(r"^[0-9a-f]{64}$")
MODEL_FILENAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+ -]*(/[A-Za-z0-9][A-Za-z0-9._+ -]*)*$")
ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")  # used with fullmatch: no trailing newline into an env file


# Query parameters that carry a credential (compared case-insensitively, after percent-decoding): presigned S3
# (SigV4 X-Amz-Signature/-Credential/-Security-Token, SigV2 Signature/AWSAccessKeyId), Google Cloud Storage
# (X-Goog-Signature/-Credential, GoogleAccessId), Azure SAS (sig), CloudFront (Signature), and the usual API
# token names. `key` too, but only with a secret-looking value (SECRET_LOOKING): `?key=models/a.safetensors` is a path.
CREDENTIAL_QUERY_PARAMETERS = (
    "x-amz-signature", "x-amz-credential", "x-amz-security-token", "awsaccesskeyid", "signature",
    "x-goog-signature", "x-goog-credential", "googleaccessid", "sig",
    "token", "access_token", "api_key", "apikey", "api-key", "auth", "password", "secret",
)
SECRET_LOOKING = re.compile(r"[A-Za-z0-9_-]{16,}")  # an opaque key such as Google's AIza...: long, no '/' or '.'


def _check_model_url(value: str) -> str:
    # The URL is shown in plans, logs and errors, and sent to the host in argv: no credential may ride in it.
    if not value.isprintable() or any(c.isspace() for c in value):
        raise ValueError("the URL contains a space or a control character; allowed: an https:// URL without either "
                         "(percent-encode them)")
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http"):
        raise ValueError(f"scheme {parts.scheme!r}: allowed: an https:// (or, without token_env, http://) URL")
    if parts.username or parts.password:
        raise ValueError("the URL carries a secret (a user name or password), which would show in logs; allowed: a "
                         "URL without credentials: put the token in token_env instead (sent as an Authorization: "
                         "Bearer header)")
    for name, secret in parse_qsl(parts.query, keep_blank_values=True):
        name = name.lower()
        if name in CREDENTIAL_QUERY_PARAMETERS or (name == "key" and SECRET_LOOKING.fullmatch(secret)):
            raise ValueError(
                f"the URL carries a secret (query parameter {name!r}), which would show in plans, logs and process "
                f"lists; refused parameters: {', '.join(CREDENTIAL_QUERY_PARAMETERS)}, and key= with a "
                "secret-looking value (16 or more letters, digits, '_' or '-'). A presigned or SAS URL is a secret "
                "itself: put the token in token_env instead (sent as an Authorization: Bearer header) with the "
                "plain URL")
    return value


class Model(SpecModel):
    """A model file: fetched once, verified by sha256, placed at <models_dir>/<folder>/<filename>."""

    model_config = STRICT
    url: Annotated[str, AfterValidator(_check_model_url)] = Field(
        description="Hugging Face resolve/<commit>/... URL or any HTTPS URL")
    sha256: str = Field(description="expected sha256 (64 lowercase hex); the file never lands without it")
    size: int | None = Field(None, gt=0, description="expected size in bytes (checked when given)")
    folder: str = Field(description="ComfyUI model folder: " + ", ".join(MODEL_FOLDERS))
    filename: str = Field(description="file name inside the folder (sub-directories allowed, no '..')")
    token_env: str | None = Field(None, description="name of the environment variable (on the machine running "
                                                    "pyinfra) holding a bearer token, e.g. HF_TOKEN; sent only to "
                                                    "the url's own https:// origin, never along a redirect elsewhere")
    license: str | None = Field(None, description="informational, e.g. 'non-commercial'")

    @field_validator("sha256")
    @classmethod
    def _sha(cls, value: str) -> str:
        if not SHA256.fullmatch(value):
            raise ValueError(f"{value!r}: allowed: 64 lowercase hex characters (sha256sum output)")
        return value

    @field_validator("folder")
    @classmethod
    def _folder(cls, value: str) -> str:
        if value not in MODEL_FOLDERS:
            raise ValueError(f"{value!r} is not a model folder ComfyUI knows; allowed: {', '.join(MODEL_FOLDERS)}")
        return value

    @field_validator("filename")
    @classmethod
    def _filename(cls, value: str) -> str:
        if not MODEL_FILENAME.fullmatch(value) or ".." in value.split("/"):
            raise ValueError(f"{value!r}: allowed: a relative file name (letters, digits, '.', '_', '-', '+', "
                             "space; sub-directories with '/'; no '..')")
        return value

    @field_validator("token_env")
    @classmethod
    def _env(cls, value: str | None) -> str | None:
        if value is not None and not ENV_NAME.fullmatch(value):
            raise ValueError(f"{redacted(value)} is not an environment variable name; allowed: an environment variable "
                             "NAME such as HF_TOKEN (never the token itself)")
        return value

    @model_validator(mode="after")
    def _token_only_over_https(self) -> Model:
        parts = urlsplit(self.url)
        # a mirror on the host itself (loopback): the token never leaves the machine
        on_the_host = parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")
        if self.token_env and parts.scheme != "https" and not on_the_host:
            raise ValueError(f"url is {parts.scheme}:// and token_env {self.token_env} sends a bearer token with every "
                             "request, in clear text over http://; allowed with token_env: an https:// URL (or "
                             "http:// to the host itself: 127.0.0.1, localhost, [::1])")
        return self


# ComfyUI's mutually exclusive flag groups (comfy/cli_args.py at 0.3.64): argparse exits 2 at
# start-up when two of a group are given; the spec refuses them before any host is touched.
EXCLUSIVE_FLAGS = (
    ("--gpu-only", "--highvram", "--normalvram", "--lowvram", "--novram", "--cpu"),
    ("--cuda-malloc", "--disable-cuda-malloc"),
    ("--cache-classic", "--cache-lru", "--cache-none"),
    ("--use-split-cross-attention", "--use-quad-cross-attention", "--use-pytorch-cross-attention",
     "--use-sage-attention", "--use-flash-attention"),
    ("--force-fp32", "--force-fp16"),
    ("--fp32-unet", "--fp64-unet", "--bf16-unet", "--fp16-unet", "--fp8_e4m3fn-unet", "--fp8_e5m2-unet",
     "--fp8_e8m0fnu-unet"),
    ("--fp16-vae", "--fp32-vae", "--bf16-vae"),
    ("--fp8_e4m3fn-text-enc", "--fp8_e5m2-text-enc", "--fp16-text-enc", "--fp32-text-enc", "--bf16-text-enc"),
    ("--force-upcast-attention", "--dont-upcast-attention"),
)
# extra_args: ComfyUI's flags by name (argparse long options, some with '_': --fp8_e4m3fn-unet) and their values.
FLAG_NAME = re.compile(r"--[a-z0-9][a-z0-9_-]*")
FLAG_VALUE = re.compile(r"[A-Za-z0-9._/:@+=,*][A-Za-z0-9._/:@+=,*-]*")
FLAG_VALUE_ALLOWED = ("allowed in a flag's value: letters, digits and . _ / : @ + = , * - (not starting with '-'), "
                      "one element per argument (no spaces, quotes, $, % or #)")
# Flags the plan sets from fields: in extra_args they would fight the field.
MANAGED_FLAGS = {
    "--listen": "listen", "--port": "port", "--output-directory": "install_root", "--input-directory": "install_root",
    "--temp-directory": "install_root", "--user-directory": "install_root", "--base-directory": "install_root",
    "--database-url": "install_root",
    "--extra-model-paths-config": "models_dir", "--max-upload-size": "max_upload_size_mb",
    "--preview-method": "preview_method", "--reserve-vram": "reserve_vram_gb", "--cuda-device": "gpu_select",
    "--gpu-only": "vram_mode", "--highvram": "vram_mode", "--normalvram": "vram_mode", "--lowvram": "vram_mode",
    "--novram": "vram_mode", "--cpu": "cpu_only", "--disable-cuda-malloc": "disable_cuda_malloc",
}
VRAM_MODES = ("default", "gpu-only", "highvram", "normalvram", "lowvram", "novram")


CRON_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
CRON_NAMES = {"month": ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
              "day-of-week": ("sun", "mon", "tue", "wed", "thu", "fri", "sat")}
CRON_ALLOWED = ("allowed: five cron fields (minute hour day-of-month month day-of-week), each *, a number, a range "
                "a-b, a step */n or a-b/n, or a comma list of those; names jan-dec and sun-sat in the month and "
                "day-of-week fields; e.g. '*/15 * * * *'")


def _check_cron(value: str) -> str:
    """A crontab(5) schedule: croniter checks ranges, steps and names; nothing else may reach the crontab line."""
    fields = value.split()
    if len(fields) != 5 or not re.fullmatch(r"[0-9A-Za-z*/,\- ]+", value):  # no %, newline, tab, #, ?, @macro
        raise ValueError(f"{value!r}: {CRON_ALLOWED}")
    try:  # strict: a day no month has (31 2); only when day-of-week is '*', else cron also runs on those weekdays
        croniter.expand(value, strict=fields[4] == "*")
    except (ValueError, TypeError) as error:  # CroniterError is a ValueError, CroniterBadTypeRangeError a TypeError
        raise ValueError(f"{value!r} is not a valid cron schedule ({error}); {CRON_ALLOWED}") from None
    for field_name, field in zip(CRON_FIELDS, fields):
        problem = _crontab_only(field_name, field)
        if problem:
            raise ValueError(f"{value!r}: {problem}; {CRON_ALLOWED}")
    return " ".join(fields)


def _crontab_only(field_name: str, field: str) -> str | None:
    """What croniter accepts but cron reads differently or refuses: its extensions (L, R, H), N/step, a-b with a > b."""
    names = CRON_NAMES.get(field_name, ())
    number = {name: i + (field_name == "month") for i, name in enumerate(names)}  # jan is 1, sun is 0
    for item in field.split(","):
        base, _, step = item.partition("/")
        low, _, high = base.partition("-")
        unknown = [p for p in (low, high) if p and not (p.isdigit() or p.lower() in names or base == "*")]
        if unknown:
            return f"{unknown[0]!r} in the {field_name} field is not crontab syntax"
        if step and not high and base != "*":
            return f"{item!r} in the {field_name} field: cron implementations read a step after one number differently"
        if high and int(number.get(low.lower(), low)) > int(number.get(high.lower(), high)):
            return f"the range {base!r} in the {field_name} field runs backwards (Sunday is 0 or 7)"
    return None


class CleanupRule(SpecModel):
    """Delete files in one of ComfyUI's data directories once they are older than a given age (a cron entry)."""

    model_config = STRICT
    directory: Literal["output", "input", "temp"] = Field(description="which data directory")
    older_than_minutes: int = Field(ge=1, description="age past which files are deleted")
    schedule: Annotated[str, AfterValidator(_check_cron)] = Field(
        "*/15 * * * *", description="cron schedule: 5 crontab fields (ranges, steps, jan-dec/sun-sat; no @hourly)")


class Sla(SpecModel):
    """Load-test targets for a host (the seed "ComfyUI Reliability Roadmap" starting values)."""

    model_config = STRICT
    success_rate: float = Field(0.98, ge=0, le=1)
    p95_s: float = Field(45.0, gt=0)
    images_per_minute: float = Field(20.0, ge=0)


WORKFLOWS_DIR = Path(__file__).resolve().parents[1] / "workflows"  # API-format templates shipped with comfyinfra


SEED_CLEANUP = [  # the seed playbooks' values: outputs 24 h, temp 1 h, inputs 7 days
    {"directory": "output", "older_than_minutes": 24 * 60},
    {"directory": "temp", "older_than_minutes": 60},
    {"directory": "input", "older_than_minutes": 7 * 24 * 60},
]


# The container section lives beside the code that builds and runs it; it needs SpecModel, defined above.
from comfyinfra.container.spec import ContainerSpec  # noqa: E402


class HostSpec(SpecModel):
    """Everything comfyinfra needs to know about one ComfyUI host."""

    model_config = STRICT

    host_kind: HostKind = Field(description="wsl, runpod, dgx or linux: set by group_data/<kind>.py")
    comfyui_allow_insecure_transport: bool = Field(
        False, description="accept an http:// or git:// comfyui_repo, which anyone on the network path can answer "
        "in the server's place (with other code); only for a private mirror on a network you trust")
    comfyui_repo: RepoUrl = Field(description="ComfyUI git URL (https://, ssh://, git@host:path, file://) or absolute "
                                  "path; override for mirrors and offline hosts")
    comfyui_allow_branch: bool = Field(False, description="accept a branch name for comfyui_ref (not reproducible)")
    comfyui_ref: str = Field(description="full 40-hex commit or a tag of ComfyUI")
    torch: TorchPins
    custom_nodes: list[CustomNode] = Field(default_factory=list)
    extra_pip_packages: list[str] = Field(
        default_factory=list, description="installed with ComfyUI's requirements (0.3.64 needs 'requests')"
    )
    pip_sources: PipSources = Field(default_factory=PipSources)
    install_root: InstallPath = Field(description="everything lives under here: app/, venv/, models/, logs/, ...; "
                                      "an absolute path of letters, digits and . _ / + -: a directory of its own "
                                      "such as /opt/comfyui (not /, /opt, /var, a user's home, nor under /etc, /usr, "
                                      "/run, ...)")
    service_user: str = Field(description="unprivileged user that owns the tree and runs ComfyUI")
    python: str = Field("python3", description="interpreter on the host used to create the venv, looked up on the "
                        "system PATH (not root's own: the service user runs the venv's python, which links to it)")
    expose_unauthenticated: bool = Field(
        False, description="accept a listen address beyond loopback: ComfyUI has no authentication, and whoever "
        "reaches the port runs workflows, i.e. custom-node code, as the service user. Prefer a reverse proxy with "
        "authentication in front of a loopback listen; set this only for a network you trust entirely")
    listen: str = Field("127.0.0.1", description="address ComfyUI binds (comma list allowed); beyond loopback "
                        "only with expose_unauthenticated")
    port: int = Field(8188, ge=1, le=65535, description="TCP port ComfyUI listens on")
    service_manager: Literal["auto", "systemd", "supervisor"] = Field(
        "auto", description="auto: systemd when it is PID 1 on the host, else supervisord"
    )
    container: ContainerSpec | None = Field(None, description="run ComfyUI in a container built on the host from "
                                            "this plan ({base, base_image, engine, ...}; comfyinfra/container/spec.py); "
                                            "compose is then its service manager")
    health_timeout_s: int = Field(180, ge=5, le=3600, description="how long to wait for /system_stats after a (re)start")
    model_catalog: dict[str, Model] = Field(
        default_factory=dict, description="fleet-wide model files by name; hosts pick from it with `models`")
    models: list[str] = Field(default_factory=list, description="names from model_catalog to place on this host")
    models_dir: InstallPath | None = Field(None, description="model store (default <install_root>/models); may be a "
                                                         "network volume, ComfyUI finds it via extra_model_paths.yaml")
    model_downloads_parallel: int = Field(2, ge=1, le=8, description="models of one host downloaded at once")
    gpu: DeclaredGpu | None = Field(None, description="declared GPU, for offline planning; nvidia-smi facts win")
    # The declared platform: what a plan made without the host (./infra render) assumes. At deploy time the host's
    # facts decide, and a declaration they contradict fails that host, like a declared gpu.
    platform_arch: Literal["x86_64", "aarch64"] | None = Field(
        None, description="declared CPU architecture (uname -m), for planning without the host; the host's facts win")
    platform_wsl: bool | None = Field(
        None, description="declared: Linux under WSL2 (unset: as host_kind says), for planning without the host")
    platform_init: Literal["systemd", "other"] | None = Field(
        None, description="declared init: 'systemd' when systemd is PID 1, 'other' (containers, WSL without "
        "systemd), for planning without the host; the host's facts win")
    wsl_windows_access: bool = Field(
        False, description="WSL hosts: let Linux processes start Windows programs and use the Windows drives. Off, "
        "/etc/wsl.conf turns interop off and mounts the drives for root only: else ComfyUI's service user could act "
        "as the Windows user that started WSL (elevated, when the Windows host's boot task starts it)")
    wsl_default_user: str | None = Field(None, description="WSL hosts: [user] default= in /etc/wsl.conf, the user "
                                         "`wsl.exe` opens a shell as (comfyinfra writes the whole file)")
    cpu_only: bool = Field(False, description="run on the CPU even if a GPU is present")

    # --- launch policy (comfyinfra/plan.py launch_args) -------------------------------------
    vram_mode: Literal[VRAM_MODES] = Field(  # type: ignore[valid-type]
        "default", description="ComfyUI's VRAM mode; 'default' (no flag) keeps partial loading, which large models "
        "need: gpu-only/highvram turn it off and OOM when the models don't fit (torch-models-nodes.md §3)")
    reserve_vram_gb: float | None = Field(
        None, ge=0, le=64, description="VRAM kept free for others (--reserve-vram); default 1 GB on WSL, whose GPU "
        "also drives the Windows desktop, else ComfyUI's own default")
    disable_cuda_malloc: bool = Field(False, description="--disable-cuda-malloc: the cudaMallocAsync assert workaround")
    preview_method: Literal["none", "auto", "latent2rgb", "taesd"] = Field("none", description="--preview-method")
    max_upload_size_mb: float = Field(100, gt=0, le=100000, description="--max-upload-size; match any proxy in front")
    gpu_select: int | str | None = Field(
        None, description="the GPU ComfyUI uses, by nvidia-smi index or UUID (prefix allowed); exported as "
        "CUDA_VISIBLE_DEVICES=<UUID> with CUDA_DEVICE_ORDER=PCI_BUS_ID, so nvidia-smi and PyTorch agree")
    cleanup: list[CleanupRule] = Field(default_factory=lambda: [CleanupRule(**r) for r in SEED_CLEANUP],
                                       description="cleanup cron entries, one per rule")
    log_retention_days: int = Field(14, ge=1, le=365, description="ComfyUI logs rotate daily, this many are kept")
    gpu_monitor: bool = Field(True, description="sample VRAM/temperature/power every gpu_monitor_interval_s (GPU hosts)")
    gpu_monitor_interval_s: int = Field(30, ge=5, le=3600)
    gpu_monitor_retention_days: int = Field(14, ge=1, le=365)
    run_cron_daemon: bool = Field(False, description="supervise `cron -f` (containers have no init to start cron)")
    smoke_workflows: list[str] = Field(
        default_factory=lambda: ["sdxl_txt2img.json", "sdxl_img2img.json", "sdxl_batch.json"],
        description="templates from workflows/ deployed to <install_root>/workflows and validated by the smoke suite "
        "against the live /object_info (node classes, inputs, links, model names)")
    sla: Sla = Field(default_factory=Sla, description="load-test targets: `python -m comfyinfra.loadtest --inventory`")
    smoke_generate: str | None = Field(
        None, description="opt-in: the smoke suite runs this template (e.g. cpu_smoke.json on CPU hosts) and checks "
        "its images")
    service_secrets: dict[str, str] = Field(
        default_factory=dict, description="environment of ComfyUI from secrets: {NAME_IN_SERVICE: NAME_OF_ENV_VAR on the "
        "machine running pyinfra}; written to a 0600 env file, never to a template, command line or log")
    extra_args: list[str] = Field(default_factory=list, validate_default=True, description="more ComfyUI flags, one "
                                  "element per argument, e.g. ['--fast', '--cache-lru', '10']: flags by name, values "
                                  "of letters, digits and . _ / : @ + = , * -")

    @field_validator("wsl_default_user")
    @classmethod
    def _wsl_user(cls, value: str | None) -> str | None:
        if value is not None and not POSIX_USER.fullmatch(value):
            raise ValueError(f"{value!r}: allowed: a Linux user name (lowercase letters, digits, '_', '-')")
        return value

    @field_validator("comfyui_ref")
    @classmethod
    def _comfyui_pinned(cls, value: str, info: ValidationInfo) -> str:
        return _check_ref(value, info.data.get("comfyui_allow_branch", False), "comfyui_allow_branch")

    @field_validator("comfyui_repo")
    @classmethod
    def _comfyui_secure_repo(cls, value: str, info: ValidationInfo) -> str:
        return _check_transport(value, info.data.get("comfyui_allow_insecure_transport", False),
                                "comfyui_allow_insecure_transport", SECURE_REPO)

    @field_validator("custom_nodes")
    @classmethod
    def _unique_nodes(cls, value: list[CustomNode]) -> list[CustomNode]:
        names = [node.name for node in value]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"{', '.join(map(repr, duplicates))} listed more than once; allowed: unique custom node "
                             "names (each is a directory under custom_nodes/)")
        return value

    @field_validator("model_catalog")
    @classmethod
    def _catalog_names(cls, value: dict) -> dict:
        for name in value:
            if not NODE_NAME.fullmatch(name):
                raise ValueError(f"model name {name!r}: allowed: letters, digits, '.', '_', '-'")
        return value

    @field_validator("model_catalog")
    @classmethod
    def _one_file_per_path(cls, value: dict[str, Model]) -> dict[str, Model]:
        owners: dict[str, str] = {}  # folder/filename -> the first entry placing it
        for name, model in value.items():
            path = f"{model.folder}/{model.filename}"
            other = owners.setdefault(path, name)
            if value[other].sha256 != model.sha256:
                raise ValueError(f"{other!r} and {name!r} both place {path} with different sha256 (a host would get "
                                 "whichever lands last); allowed: one file per folder/filename (rename one of them)")
        return value

    @field_validator("models")
    @classmethod
    def _selected_models(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if "model_catalog" not in info.data:
            return value  # the catalog itself is invalid and reported; names can't be checked against it
        catalog = info.data["model_catalog"]
        unknown = [name for name in value if name not in catalog]
        if unknown:
            raise ValueError(f"{', '.join(map(repr, unknown))} not in model_catalog; allowed: "
                             f"{', '.join(sorted(catalog)) or '(the catalog is empty)'}")
        return value

    @field_validator("extra_args")
    @classmethod
    def _one_argument_each(cls, value: list[str]) -> list[str]:
        """Each element reaches ComfyUI as one argument, through a unit's ExecStart= or supervisord's command=:
        a flag by name, or a value after a flag in characters neither of them (nor a shell) reads."""
        for index, arg in enumerate(value):
            flag, equals, inline_value = arg.partition("=")
            if arg.startswith("-"):
                if not FLAG_NAME.fullmatch(flag) or (equals and not FLAG_VALUE.fullmatch(inline_value)):
                    raise ValueError(f"[{index}] {arg!r}: allowed: a flag by name such as --fast or --cache-lru, or "
                                     f"--flag=value; {FLAG_VALUE_ALLOWED}")
            elif index == 0:
                raise ValueError(f"[0] {arg!r} is not a flag; allowed: flags by name, each followed by its values, "
                                 "one element per argument (e.g. ['--cache-lru', '10'])")
            elif not FLAG_VALUE.fullmatch(arg):
                raise ValueError(f"[{index}] {arg!r}: {FLAG_VALUE_ALLOWED}")
        return value

    @field_validator("extra_args")
    @classmethod
    def _launch_flags(cls, value: list[str], info: ValidationInfo) -> list[str]:
        for arg in value:
            flag = arg.split("=", 1)[0]
            if flag in MANAGED_FLAGS:
                raise ValueError(f"{flag} is set from field {MANAGED_FLAGS[flag]!r}; set that field instead of extra_args")
        chosen = [a.split("=", 1)[0] for a in value if a.startswith("--")]
        vram = info.data.get("vram_mode", "default")
        if vram != "default":
            chosen.append(f"--{vram}")
        if info.data.get("cpu_only"):
            chosen.append("--cpu")
        if info.data.get("disable_cuda_malloc"):
            chosen.append("--disable-cuda-malloc")
        for group in EXCLUSIVE_FLAGS:
            clash = sorted({flag for flag in chosen if flag in group})
            if len(clash) > 1:
                raise ValueError(f"{' and '.join(clash)} are mutually exclusive in ComfyUI (group: {', '.join(group)}); "
                                 "keep one (vram_mode, cpu_only and disable_cuda_malloc count as their flags)")
        return value

    @field_validator("smoke_workflows")
    @classmethod
    def _templates_exist(cls, value: list[str]) -> list[str]:
        shipped = sorted(p.name for p in WORKFLOWS_DIR.glob("*.json"))
        unknown = [name for name in value if name not in shipped]
        if unknown:
            raise ValueError(f"{', '.join(unknown)} not in workflows/; allowed: {', '.join(shipped)}")
        return value

    @field_validator("smoke_generate")
    @classmethod
    def _generate_template(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and value not in info.data.get("smoke_workflows", []):
            raise ValueError(f"{value!r} must also be listed in smoke_workflows (it is deployed and validated first)")
        return value

    @field_validator("service_secrets", mode="before")
    @classmethod
    def _secret_names(cls, value: Any) -> Any:
        """Before pydantic's own checks, whose error locations would print a key: keys and values are only ever
        shown redacted."""
        if not isinstance(value, dict):
            return value  # pydantic refuses it ("a valid dictionary"), without echoing it
        for text in (*value.keys(), *value.values()):
            if not (isinstance(text, str) and ENV_NAME.fullmatch(text)):
                shown = redacted(text) if isinstance(text, str) else f"a value of type {type(text).__name__}"
                raise ValueError(f"{shown} is not an environment variable name; allowed: environment variable NAMES "
                                 "on both sides (e.g. {'HF_TOKEN': 'HF_TOKEN'}), never the secret itself")
        return value

    @field_validator("gpu_select", mode="before")
    @classmethod
    def _gpu_select(cls, value: Any) -> Any:
        """Before pydantic's int-or-str union, which words a wrong type as two problems (and takes True for 1)."""
        if value is None or (type(value) is int and value >= 0):
            return value
        if isinstance(value, str) and (re.fullmatch(r"[0-9]+", value) or GPU_UUID_PREFIX.fullmatch(value)):
            return value
        raise ValueError(f"{value!r}: allowed: an nvidia-smi index (0, 1, ...) or a GPU UUID or its prefix, as "
                         "`nvidia-smi -L` prints it (e.g. 'GPU-3f1c')")

    @field_validator("service_user")
    @classmethod
    def _user(cls, value: str) -> str:
        if not POSIX_USER.fullmatch(value) or value == "root":
            raise ValueError(f"{value!r}: allowed: a non-root POSIX user name such as 'comfy'")
        return value

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str, info: ValidationInfo) -> str:
        exposed = []
        for address in value.split(","):
            try:
                if not ipaddress.ip_address(address.strip()).is_loopback:
                    exposed.append(address.strip())
            except ValueError:
                raise ValueError(f"{address!r}: allowed: IP addresses such as 127.0.0.1 or 0.0.0.0, comma-separated") from None
        if exposed and not info.data.get("expose_unauthenticated", False):
            raise ValueError(
                f"{', '.join(exposed)} is not loopback: ComfyUI has no authentication, and anyone who reaches the port "
                "can run workflows, and with them custom-node code, as the service user. Keep listen on 127.0.0.1 and "
                "put a reverse proxy with authentication in front of it (the smoke suite and load test reach "
                "loopback through SSH), or set expose_unauthenticated: True for this host if you trust every "
                "machine that can reach it")
        return value

    @field_validator("python")
    @classmethod
    def _python(cls, value: str) -> str:
        if not re.fullmatch(r"(/[A-Za-z0-9_.+-]+)+|python3(\.[0-9]+)?", value):
            raise ValueError(f"{value!r}: allowed: python3, python3.X or an absolute interpreter path")
        return value

    @field_validator("extra_pip_packages")
    @classmethod
    def _requirements(cls, value: list[str]) -> list[str]:
        for requirement in value:
            if not PIP_REQUIREMENT.fullmatch(requirement):
                raise ValueError(f"{requirement!r}: allowed: a pip requirement such as 'requests' or 'requests==2.32.3'")
            if re.match(r"^(torch|torchvision|torchaudio)\b", requirement):
                raise ValueError(f"{requirement!r}: the torch set is pinned in 'torch', not in extra_pip_packages")
        return value


SPEC_FIELDS = frozenset(HostSpec.model_fields)
