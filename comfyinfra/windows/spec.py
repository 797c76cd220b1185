"""What a user declares for a Windows host that fronts a WSL host: WinRM, IIS, the scheduled task, the watchdog.

A Windows host is its own kind (`host_kind = "windows"`, group_data/windows.py): it runs no ComfyUI of its own; it
starts the one in the WSL host it `fronts` (an inventory name) at boot and proxies HTTPS to it through IIS. Like
`comfyinfra.spec.HostSpec` this is the single reference for its knobs, validated before anything connects; the
checks that need the fronted host (its port, its upload limit, its service backend) are in
`comfyinfra.windows.plan`, which the preflight runs for every Windows host before the first connection.

Every string is one line without control characters (SpecModel), and each is checked against the characters
its destination can carry literally (a PowerShell single-quoted string, XML, an INI line): no inventory value
becomes code in a script, a task or a config file.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, field_validator, model_validator

from comfyinfra.spec import ENV_NAME, NODE_NAME, SpecModel, redacted

DNS_NAME = re.compile(r"(?=.{1,253}\Z)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
                      r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?", re.ASCII)
# A Windows account as Task Scheduler and WinRM take it: COMPUTER\user, DOMAIN\user, user@domain or user. The user
# name never ends in '.' (not a valid sAMAccountName) or a space: it also names the profile folder C:\Users\<user>.
WINDOWS_ACCOUNT = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]{0,62}\\)?[A-Za-z0-9]([A-Za-z0-9._ -]{0,62}[A-Za-z0-9_-])?"
                             r"(@[A-Za-z0-9.-]{1,253})?", re.ASCII)
# Absolute Windows paths in characters a PowerShell single-quoted string, XML and an INI value carry as they are.
# No folder name ends in a space or a period: Windows drops those ("Naming Files, Paths, and Namespaces"), so
# C:\ProgramData. would be C:\ProgramData itself, past the check of the system's trees below.
WINDOWS_PATH = re.compile(r"[A-Za-z]:(\\[A-Za-z0-9]([A-Za-z0-9 ._-]*[A-Za-z0-9_-])?)+", re.ASCII)
# Names Windows reads as a device wherever they are, even with an extension (NUL.txt is NUL).
WINDOWS_DEVICE = re.compile(r"(CON|PRN|AUX|NUL|COM[0-9]|LPT[0-9])(\..*)?", re.IGNORECASE)
# Directories Windows itself owns: a tree of ours inside one would mix our files (run elevated) with the system's.
WINDOWS_SYSTEM_TREES = ("\\windows", "\\program files", "\\program files (x86)", "\\users", "\\programdata",
                        "\\inetpub")
THUMBPRINT = re.compile(r"[0-9A-Fa-f]{40}")
CERT_SUBJECT = re.compile(r"CN=[A-Za-z0-9*.-]{1,253}", re.ASCII)
DISTRO = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
SITE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# What follows the host in an origin as a browser sends it (RFC 6454): nothing, or ':' and the port in digits (no
# sign, space or leading zero); an origin written otherwise never matches, and CORS fails without a word.
ORIGIN_PORT = re.compile(r"(?::([1-9][0-9]{0,4}))?")


def _check_windows_path(value: str) -> str:
    segments = value.split("\\")
    if ".." in segments or not WINDOWS_PATH.fullmatch(value) or any(map(WINDOWS_DEVICE.fullmatch, segments)):
        raise ValueError(f"{value!r}: allowed: an absolute Windows path such as C:\\ProgramData\\comfyinfra, of letters, "
                         "digits, space, '.', '_' and '-' (no '..', no quotes, no '$' or '%'), no folder name ending "
                         "in a space or '.' and none a device name such as NUL or CON (Windows reads those as another "
                         "path)")
    return value


def _check_own_tree(value: str) -> str:
    """A directory of our own: not a drive root and not one of the system's shared directories itself."""
    tail = value[2:].lower().rstrip("\\")
    if tail in ("", *WINDOWS_SYSTEM_TREES) or tail.startswith("\\windows\\"):
        raise ValueError(f"{value!r} is a directory Windows or every user shares; allowed: a directory of its own such "
                         "as C:\\ProgramData\\comfyinfra or C:\\inetpub\\comfyui")
    return value


WindowsPath = Annotated[str, AfterValidator(_check_windows_path)]
OwnWindowsDir = Annotated[str, AfterValidator(_check_windows_path), AfterValidator(_check_own_tree)]


def _check_env_name(value: str) -> str:
    if not ENV_NAME.fullmatch(value):  # never shown: this is where a pasted password would land
        raise ValueError(f"{redacted(value)} is not an environment variable name; allowed: the NAME of a variable on "
                         "the machine running pyinfra, such as WIN3090_WINRM_PASSWORD (never the password itself)")
    return value


EnvName = Annotated[str, AfterValidator(_check_env_name)]


def _check_account(value: str) -> str:
    if not WINDOWS_ACCOUNT.fullmatch(value) or value != value.strip():
        raise ValueError(f"{redacted(value)} is not a Windows account name; allowed: COMPUTER\\user, DOMAIN\\user, "
                         "user@domain or user (letters, digits, '.', '_', '-', spaces inside the name; the user name "
                         "not ending in '.')")
    return value


Account = Annotated[str, AfterValidator(_check_account)]


class WinRM(SpecModel):
    """How the deploy reaches the Windows host: WinRM over HTTPS (5986), certificate validated."""

    host: str = Field(description="DNS name or IP address of the WinRM listener (the certificate's name)")
    port: int = Field(5986, ge=1, le=65535, description="WinRM listener port (HTTPS: 5986)")
    scheme: Literal["https", "http"] = Field("https", description="https; http only with allow_insecure_transport")
    allow_insecure_transport: bool = Field(False, description="accept scheme http or cert_validation False: the "
                                           "credentials and every file would cross the network readable or forgeable")
    transport: Literal["ntlm", "kerberos", "credssp"] = Field("ntlm", description="WinRM authentication")
    user: Account = Field(description="account the deploy logs in as (an administrator), e.g. WIN3090\\deploy")
    password_env: EnvName = Field(description="NAME of the environment variable on the machine running pyinfra that "
                                  "holds the password (never the password)")
    cert_validation: bool = Field(True, description="validate the listener's certificate (off only with "
                                  "allow_insecure_transport)")
    ca_trust_path: str | None = Field(None, description="PEM bundle on the machine running pyinfra that signs the "
                                      "listener's certificate (default: the CA bundle of requests, certifi)")

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            if not DNS_NAME.fullmatch(value):
                raise ValueError(f"{value!r}: allowed: a DNS name or an IP address") from None
            return value
        # An IPv6 zone index (fe80::1%eth0) is free text, which the endpoint URL can't carry as written.
        if getattr(address, "scope_id", None) is not None:
            raise ValueError(f"{value!r}: allowed: a DNS name or an IP address without a zone index (%...)")
        return value

    @field_validator("ca_trust_path")
    @classmethod
    def _ca_path(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError(f"{value!r}: allowed: an absolute path on the machine running pyinfra")
        return value

    @model_validator(mode="after")
    def _secure(self) -> WinRM:
        weak = [what for what, bad in (("scheme http", self.scheme == "http"),
                                       ("cert_validation False", not self.cert_validation)) if bad]
        if weak and not self.allow_insecure_transport:
            raise ValueError(f"{' and '.join(weak)} would send the WinRM credentials and every file readable or to an "
                             "impostor; allowed: scheme https with cert_validation (set ca_trust_path for a private CA), "
                             "or allow_insecure_transport = True on purpose")
        return self


class Certificate(SpecModel):
    """The TLS certificate of the site, from Cert:\\LocalMachine\\My: by thumbprint, or by subject."""

    thumbprint: str | None = Field(None, description="40 hex digits (Get-ChildItem Cert:\\LocalMachine\\My)")
    subject: str | None = Field(None, description="e.g. 'CN=*.example.com': the newest valid certificate with it")

    @field_validator("thumbprint")
    @classmethod
    def _thumbprint(cls, value: str | None) -> str | None:
        if value is not None and not THUMBPRINT.fullmatch(value):
            raise ValueError("allowed: 40 hexadecimal digits, without spaces (Get-ChildItem Cert:\\LocalMachine\\My)")
        return value.upper() if value else value

    @field_validator("subject")
    @classmethod
    def _subject(cls, value: str | None) -> str | None:
        if value is not None and not CERT_SUBJECT.fullmatch(value):
            raise ValueError(f"{value!r}: allowed: CN=<name>, e.g. CN=*.example.com")
        return value

    @model_validator(mode="after")
    def _one(self) -> Certificate:
        if (self.thumbprint is None) == (self.subject is None):
            raise ValueError("set exactly one of thumbprint and subject")
        return self


class Site(SpecModel):
    """The IIS site in front of ComfyUI."""

    name: str = Field("ComfyUI", description="IIS site and application pool name")
    host_name: str = Field(description="the name browsers use, e.g. comfy.example.com (SNI binding, covered by the "
                           "certificate)")
    certificate: Certificate = Field(description="{thumbprint: ...} or {subject: 'CN=*.example.com'}")
    path: OwnWindowsDir = Field("C:\\inetpub\\comfyui", description="the site's directory (holds web.config only)")
    hsts_max_age_s: int = Field(31536000, ge=0, le=63072000, description="Strict-Transport-Security max-age")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not SITE_NAME.fullmatch(value):
            raise ValueError(f"{value!r}: allowed: letters, digits, '.', '_', '-'")
        return value

    @field_validator("host_name")
    @classmethod
    def _host_name(cls, value: str) -> str:
        if not DNS_NAME.fullmatch(value) or "." not in value:
            raise ValueError(f"{value!r}: allowed: a fully qualified DNS name such as comfy.example.com")
        return value.lower()


class Watchdog(SpecModel):
    """The PowerShell loop the scheduled task runs: starts ComfyUI in WSL, polls /system_stats, restarts it."""

    tries: int = Field(5, ge=1, le=50, description="restarts in a row before the distro itself is recycled")
    interval_s: int = Field(30, ge=5, le=3600, description="seconds between health checks")
    startup_grace_s: int = Field(180, ge=10, le=3600, description="seconds a (re)start gets before the next check")


class RateLimit(SpecModel):
    """IIS Dynamic IP Restrictions: per-client limits, answered with 403."""

    max_concurrent_requests: int = Field(20, ge=1, le=100000)
    max_requests: int = Field(300, ge=1, le=100000, description="requests per client within interval_ms")
    interval_ms: int = Field(10000, ge=100, le=3600000)


def _check_origin(value: str) -> str:
    if value == "*":
        return value
    parts = urlsplit(value)
    port = ORIGIN_PORT.fullmatch(parts.netloc[len(parts.hostname or ""):])
    if (parts.scheme not in ("https", "http") or not parts.hostname or not DNS_NAME.fullmatch(parts.hostname)
            or parts.path or parts.query or parts.fragment or parts.username or parts.password
            or value != f"{parts.scheme}://{parts.netloc}" or not port or int(port[1] or 1) > 65535):
        raise ValueError(f"{value!r}: allowed: an origin such as https://app.example.com or https://app.example.com:8443 "
                         "(scheme, host and port only), or '*' with cors_allow_any_origin = True")
    return value.lower()  # as browsers send it (RFC 6454 serializes scheme and host in lowercase)


class WindowsHostSpec(SpecModel):
    """A Windows box that runs ComfyUI in WSL2 (the host it `fronts`) and fronts it with IIS over HTTPS."""

    host_kind: Literal["windows"] = Field(description="windows: set by group_data/windows.py")
    fronts: str = Field(description="inventory name of the WSL host whose ComfyUI this box starts and proxies "
                        "(its port, health URL and upload limit come from that host's plan)")
    winrm: WinRM = Field(description="how the deploy connects: {host, user, password_env, ...}")
    site: Site = Field(description="{host_name, certificate: {thumbprint | subject}, ...}")
    cors_origins: list[Annotated[str, AfterValidator(_check_origin)]] = Field(
        default_factory=list, description="origins other sites may call ComfyUI from (IIS CORS module); empty: "
        "same-origin only; '*' only with cors_allow_any_origin")
    cors_allow_any_origin: bool = Field(False, description="accept cors_origins ['*']: any web page a user visits "
                                        "could then drive ComfyUI through their browser")
    upload_limit_mb: float = Field(100, gt=0, le=4095, description="largest request IIS accepts, in MiB (bytes in "
                                   "web.config); at most the fronted host's max_upload_size_mb")
    proxy_timeout_s: int = Field(3600, ge=1, le=86400, description="ARR proxy timeout (long generations, idle /ws)")
    wsl_distro: str = Field("Ubuntu", description="the WSL distribution ComfyUI runs in (wsl.exe -d)")
    wsl_user: Account = Field(description="the Windows account that owns the distro (distros are per user); the "
                              "scheduled task runs as it")
    wsl_user_password_env: EnvName = Field(description="NAME of the environment variable holding wsl_user's "
                                           "password: the task runs whether or not the user is logged on (LogonType "
                                           "Password), so Task Scheduler stores it")
    wsl_user_profile: WindowsPath | None = Field(None, description="wsl_user's profile directory, where .wslconfig "
                                                 "goes (default C:\\Users\\<user name>)")
    install_dir: OwnWindowsDir = Field("C:\\ProgramData\\comfyinfra", description="scripts, task XML, web.config "
                                       "source and watchdog logs; writable by administrators only")
    watchdog: Watchdog = Field(default_factory=Watchdog)
    basic_auth: bool = Field(False, description="IIS Basic authentication against Windows accounts (over HTTPS only)")
    allowed_ips: list[str] = Field(default_factory=list, description="client networks allowed in, e.g. "
                                   "['192.168.1.0/24']; empty: everyone")
    rate_limit: RateLimit | None = Field(None, description="per-client request limits (IIS Dynamic IP Restrictions)")

    @field_validator("fronts")
    @classmethod
    def _fronts(cls, value: str) -> str:
        if not NODE_NAME.fullmatch(value):
            raise ValueError(f"{value!r}: allowed: the inventory name of a host in the wsl group")
        return value

    @field_validator("wsl_distro")
    @classmethod
    def _distro(cls, value: str) -> str:
        if not DISTRO.fullmatch(value):
            raise ValueError(f"{value!r}: allowed: a distribution name as `wsl --list` shows it (letters, digits, "
                             "'.', '_', '-')")
        return value

    @field_validator("allowed_ips")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for index, network in enumerate(value):
            try:
                # A zone index (fe80::%eth0) names an interface of some machine; IIS ipSecurity reads none.
                if getattr(ipaddress.ip_network(network, strict=True).network_address, "scope_id", None) is not None:
                    raise ValueError(network)
            except ValueError:
                raise ValueError(f"[{index}] {network!r}: allowed: an IP address or network such as 192.168.1.0/24 "
                                 "(host bits zero, no zone index such as %eth0)") from None
        return value

    @model_validator(mode="after")
    def _cors(self) -> WindowsHostSpec:
        if "*" in self.cors_origins and (not self.cors_allow_any_origin or len(self.cors_origins) > 1):
            raise ValueError("cors_origins '*' lets any web page a user visits call ComfyUI through their browser; "
                             "allowed: an explicit list of origins, or exactly ['*'] with cors_allow_any_origin = True")
        if "*" in self.cors_origins and self.basic_auth:
            raise ValueError("cors_origins '*' can't carry credentials (browsers refuse Access-Control-Allow-Origin * "
                             "with Basic authentication); allowed: an explicit list of origins")
        return self

    @property
    def upload_limit_bytes(self) -> int:
        return round(self.upload_limit_mb * 1024 * 1024)


WINDOWS_SPEC_FIELDS = frozenset(WindowsHostSpec.model_fields)
