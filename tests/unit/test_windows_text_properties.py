"""Every string field of a Windows host's spec (WindowsHostSpec), fed adversarial text (hypothesis, the strategy of
tests/unit/test_spec_text_properties.py): each value is either refused the usual way (host, field, what is allowed;
never echoing a field that may hold a secret) or it reaches everything the Windows host gets intact, read back by
the program's own rules: web.config by lxml, the task by xmlschema against the Task Scheduler schema subset,
every PowerShell script (rendered, sent by the role, or the upload bootstrap) by tree-sitter plus the lint of
tests/support/powershell_lint.py, with each literal read back ('' undone, JSON decoded), Windows paths by Windows'
naming rules and the WinRM endpoint by requests (issue 12: no Windows inventory value becomes code).
"""

from __future__ import annotations

import base64
import configparser
import ipaddress
import json
import ntpath
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import xmlschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from comfyinfra.plan import PlanError, plan_without_host
from comfyinfra.spec import HostSpec
from comfyinfra.validate import check_host
from comfyinfra.windows.artifacts import iis_view, task_view, watchdog_view, windows_artifacts
from comfyinfra.windows.connector import winrm_target
from comfyinfra.windows.facts import SCRIPTS, script
from comfyinfra.windows.operations import sha256
from comfyinfra.windows.plan import WindowsPlan, make_windows_plan
from comfyinfra.windows.spec import WindowsHostSpec
from comfyinfra.windows.winrm import put_bootstrap
from roles.windows import SITE_CHECK_TIMEOUT_S, layout_dirs, state_params, task_stamp_path
from tests.support.powershell_lint import lint
from tests.support.windows_readers import assignments, literal_text, literals, ps_value, windows_path_problem
from tests.unit.test_spec_text_properties import _edited, _string_fields, adversarial
from tests.unit.test_windows_artifacts import FRONTED, TASK_NS, TASK_SCHEMA

HOST = "win-3090"
FRONTED_PLAN = plan_without_host(HostSpec.model_validate(FRONTED))
SCHEMA = xmlschema.XMLSchema(str(TASK_SCHEMA))
FILES = {"web.config", "Install-ComfyProxy.ps1", "comfyui-watchdog.ps1", "comfyui-watchdog.xml", ".wslconfig"}
# What a registration records: hashes only (no inventory value), in the shape comfyinfra.windows.operations.task_stamp
# writes; computed for real it costs 200,000 PBKDF2 rounds per example.
STAMP_TEXT = json.dumps({"password": "0" * 64, "salt": "0" * 32, "xml": "0" * 64}, sort_keys=True)

# A Windows host using every knob that reaches a file or a script: CORS with credentials, client networks, limits.
BASE: dict[str, Any] = {
    "host_kind": "windows", "fronts": "wsl-3090",
    "winrm": {"host": "win3090.example.com", "user": "WIN3090\\deploy", "password_env": "WIN3090_WINRM_PASSWORD",
              "ca_trust_path": "/etc/comfyinfra/win-ca.pem"},
    "site": {"name": "ComfyUI", "host_name": "comfy.example.com", "path": "C:\\inetpub\\comfyui",
             "certificate": {"thumbprint": "0123456789ABCDEF0123456789ABCDEF01234567"}},
    "cors_origins": ["https://app.example.com"], "basic_auth": True, "allowed_ips": ["192.168.1.0/24"],
    "rate_limit": {"max_concurrent_requests": 10, "max_requests": 120, "interval_ms": 5000},
    "wsl_distro": "Ubuntu", "wsl_user": "WIN3090\\comfy", "wsl_user_password_env": "WIN3090_COMFY_PASSWORD",
    "install_dir": "C:\\ProgramData\\comfyinfra",
}
SUBJECT = {("site", "certificate"): {}}  # the subject instead of the thumbprint
IPV6_NETWORK = {("allowed_ips",): ["2001:db8:1234::/48"]}

# (path of a string in the spec, a valid value there, paths set first for that value to matter)
FIELDS: list[tuple[tuple, str, dict]] = [
    (("host_kind",), "windows", {}),
    (("fronts",), "wsl-3090", {}),
    (("winrm", "host"), "win3090.example.com", {}),
    (("winrm", "host"), "2001:db8::10", {}),
    (("winrm", "scheme"), "https", {}),
    (("winrm", "transport"), "ntlm", {}),
    (("winrm", "user"), "WIN3090\\deploy", {}),
    (("winrm", "password_env"), "WIN3090_WINRM_PASSWORD", {}),
    (("winrm", "ca_trust_path"), "/etc/comfyinfra/win-ca.pem", {}),
    (("site", "name"), "ComfyUI", {}),
    (("site", "host_name"), "comfy.example.com", {}),
    (("site", "certificate", "thumbprint"), "0123456789abcdef0123456789abcdef01234567", {}),
    (("site", "certificate", "subject"), "CN=*.example.com", SUBJECT),
    (("site", "path"), "C:\\inetpub\\comfyui", {}),
    (("cors_origins", 0), "https://tools.example.org:8443", {}),
    (("allowed_ips", 0), "192.168.1.0/24", {}),
    (("allowed_ips", 0), "2001:db8:1234::/48", IPV6_NETWORK),
    (("wsl_distro",), "Ubuntu-24.04", {}),
    (("wsl_user",), "WIN3090\\comfy", {}),  # no wsl_user_profile: the profile path is made from the name
    (("wsl_user",), "comfy@example.com", {}),
    (("wsl_user_password_env",), "WIN3090_COMFY_PASSWORD", {}),
    (("wsl_user_profile",), "C:\\Users\\comfy", {}),
    (("install_dir",), "C:\\ProgramData\\comfyinfra", {}),
]
# Fields that may hold a secret by mistake (a pasted password, a user name): a refusal never shows the value.
SECRET_FIELDS = {("winrm", "user"), ("winrm", "password_env"), ("wsl_user",), ("wsl_user_password_env",)}
# Values hypothesis rarely builds that were accepted once and then broke what reads them (regressions).
TRAPS: list[tuple[tuple, str, dict, str]] = [
    (("winrm", "host"), "fe80::1%$(id) x", {}, "an IPv6 zone index is free text: requests can't parse the URL"),
    (("allowed_ips", 0), "fe80::%eth0/64", IPV6_NETWORK, "IIS reads no zone index in ipSecurity"),
    (("install_dir",), "C:\\ProgramData.", {}, "Windows drops the period: C:\\ProgramData itself, ACL replaced"),
    (("install_dir",), "C:\\Windows \\comfyinfra", {}, "Windows drops the space: inside C:\\Windows"),
    (("site", "path"), "C:\\inetpub\\NUL", {}, "the NUL device, not a directory"),
    (("wsl_user_profile",), "C:\\Users\\comfy\\con.txt", {}, "the console device"),
    (("wsl_user",), "WIN3090\\comfy.", {}, "C:\\Users\\comfy.\\.wslconfig is C:\\Users\\comfy's file"),
    (("cors_origins", 0), "https://app.example.com:", {}, "an empty port: no browser sends that origin"),
    (("cors_origins", 0), "https://app.example.com:+443", {}, "not a port: no browser sends that origin"),
    (("cors_origins", 0), "https://tools.example.org: 8443", {}, "a space in the port: no browser sends that origin"),
]


# What Windows and its formats read specially, beyond the Linux test's snippets: a trailing space or period (dropped
# from a folder name), a device name, PowerShell's quotes (the typographic ones too), XML's markup, a zone index.
WINDOWS_PIECES = (" ", ".", "\\", "'", "''", "\u2019", "&", "<", "]]>", "--", "%", "%eth0", "$", "@", "NUL", ":", "/",
                  "`")


def windows_adversarial(valid: str) -> st.SearchStrategy[str]:
    """The Linux test's adversarial values, or the valid value with pieces Windows reads specially put in, or at its
    end (where Windows trims a folder name)."""
    pieces = st.lists(st.tuples(st.integers(0, 80), st.sampled_from(WINDOWS_PIECES)), min_size=1, max_size=2)
    return st.one_of(adversarial(valid), st.builds(_edited, st.just(valid), pieces),
                     st.sampled_from(WINDOWS_PIECES).map(lambda piece: valid + piece))


def host_data(path: tuple, value: str, overrides: dict) -> dict:
    data = json.loads(json.dumps(BASE))  # a deep copy
    for where, what in {**overrides, path: value}.items():
        *parents, last = where
        target = data
        for step in parents:
            target = target[step]
        target[last] = what
    return data


def spec_or_refusal(data: dict) -> tuple[WindowsHostSpec | None, list[str]]:
    """The spec, or None with the problems when refused the usual way: naming the host and field, one line each."""
    spec, problems = check_host(HOST, data, {}, require_secrets=False)
    texts = [str(problem) for problem in problems]
    for text in texts:
        assert text.startswith(f"host {HOST}, field "), text
        assert "\n" not in text and "\r" not in text, text  # shown with repr(), never raw
    if problems or not isinstance(spec, WindowsHostSpec):
        assert problems, "a value turned the host into another kind without a problem"
        return None, texts
    return spec, texts


def reveals(path: tuple, value: str, problems: list[str], overrides: dict) -> bool:
    """Whether a refusal shows the value: more of it than any refused value of this field would show (a redacted
    prefix such as 'WIN3…' (15 characters), or words of the message itself, are not the value)."""
    generic = " ".join(spec_or_refusal(host_data(path, bad, overrides))[1][0] for bad in ("\x7f", "!!!!!!!!"))
    return bool(value) and value in " ".join(problems) and value not in generic


# --- what each format reads ---------------------------------------------------------------------------------

def check_paths(plan: WindowsPlan) -> None:
    """Every Windows path the host gets or is told about is the one Windows opens."""
    paths = [artifact.dest for artifact in windows_artifacts(plan)]
    paths += [plan.web_config, plan.spec.site.path, *layout_dirs(plan), task_stamp_path(plan)]
    for path in paths:
        assert windows_path_problem(path) is None, f"{path!r}: {windows_path_problem(path)}"


def check_web_config(plan: WindowsPlan, text: str) -> None:
    root = etree.fromstring(text.encode())
    rules = root.find("system.webServer/rewrite/rules")
    redirect = rules.find("rule[@name='ForceHttps']/action").get("url")
    assert redirect == f"https://{plan.spec.site.host_name}{{UNENCODED_URL}}"
    assert rules.find("rule[@name='ComfyUIProxy']/action").get("url") == plan.proxy_target
    origins = root.findall("system.webServer/cors/add")
    assert [origin.get("origin") for origin in origins] == list(plan.spec.cors_origins)
    for origin in plan.spec.cors_origins:  # what a browser sends in Origin (RFC 6454): scheme, host, valid port
        split = urlsplit(origin)
        port = f":{split.port}" if split.port else ""
        assert origin.lower() == f"{split.scheme}://{split.hostname}{port}" and split.port != 0, origin
    allowed = root.findall("system.webServer/security/ipSecurity/add")
    assert allowed[0].attrib == {"ipAddress": "127.0.0.1", "allowed": "true"}
    for rule, network in zip(allowed[1:], plan.spec.allowed_ips, strict=True):
        address = ipaddress.ip_address(rule.get("ipAddress"))  # IIS reads an address: no zone index
        assert getattr(address, "scope_id", None) is None, rule.attrib
        assert ipaddress.ip_network(f"{address}/{rule.get('subnetMask')}") == ipaddress.ip_network(network)


def check_installer(plan: WindowsPlan, text: str) -> None:
    assert lint(text) == [], lint(text)
    view = iis_view(plan)
    expected = {"SiteName": view.site_name, "HostName": view.host_name, "SitePath": view.site_path,
                "WebConfigPath": view.web_config, "WebConfigSource": view.web_config_source,
                "CertThumbprint": view.cert_thumbprint, "CertSubject": view.cert_subject}
    assert {name: ps_value(text, name) for name in expected} == expected
    assert (view.site_name, view.host_name) == (plan.spec.site.name, plan.spec.site.host_name)
    assert view.cert_subject == plan.spec.site.certificate.subject
    assert (view.cert_thumbprint or "") == (plan.spec.site.certificate.thumbprint or "").upper()


def check_watchdog(plan: WindowsPlan, text: str) -> None:
    assert lint(text) == [], lint(text)
    view = watchdog_view(plan)
    assert ps_value(text, "Distro") == view.distro == plan.spec.wsl_distro
    assert ps_value(text, "LogDir") == view.log_dir == f"{plan.spec.install_dir}\\logs"
    assert ps_value(text, "HealthUrl") == view.health_url
    assert (ps_value(text, "StartCommand"), ps_value(text, "RestartCommand")) == (list(view.start), list(view.restart))


def check_task(plan: WindowsPlan, text: str) -> None:
    SCHEMA.validate(text)
    task = etree.fromstring(text.encode())
    view = task_view(plan)
    assert task.findtext("t:Principals/t:Principal/t:UserId", namespaces=TASK_NS) == plan.spec.wsl_user
    assert task.findtext("t:RegistrationInfo/t:Description", namespaces=TASK_NS) == view.description
    assert f"({plan.spec.wsl_distro}, {plan.spec.fronts})" in view.description
    assert task.findtext("t:Actions/t:Exec/t:WorkingDirectory", namespaces=TASK_NS) == plan.spec.install_dir
    # powershell.exe splits its command line by the MSVC rules: a `"` in the path would end the -File argument.
    assert '"' not in plan.paths.watchdog
    assert task.findtext("t:Actions/t:Exec/t:Arguments", namespaces=TASK_NS).endswith(f'-File "{plan.paths.watchdog}"')


def check_wslconfig(text: str) -> None:
    wslconfig = configparser.RawConfigParser()
    wslconfig.read_string(text)
    assert {section: dict(wslconfig[section]) for section in wslconfig.sections()} == {
        "wsl2": {"vmidletimeout": "-1"}, "general": {"instanceidletimeout": "-1"}}


def role_script_params(plan: WindowsPlan) -> dict[str, dict]:
    """What the role sends each script of comfyinfra/windows/scripts/, built as roles/windows.py and
    comfyinfra/windows/operations.py build it."""
    paths, spec = plan.paths, plan.spec
    task = {"task_path": plan.task_path, "task_name": plan.task_name}
    return {
        "state": state_params(plan, windows_artifacts(plan)),
        "layout": {"dirs": list(layout_dirs(plan)), "logs": paths.logs, "user": spec.wsl_user},
        "apply-iis": {"installer": paths.iis_setup, "host_name": spec.site.host_name, "timeout_s": SITE_CHECK_TIMEOUT_S},
        "register-task": {"xml": paths.task_xml, **task, "user": spec.wsl_user, "stamp": task_stamp_path(plan),
                          "stamp_text": STAMP_TEXT},
        "start-task": {**task, "restart": True},
    }


def params_sent(raw: str) -> Any:
    """The $Params a script receives: its one JSON literal, '' undone, decoded as ConvertFrom-Json reads it."""
    value = assignments(raw)["Params"]
    (literal,) = literals(value)
    assert value.text.decode() == f"{literal.text.decode()} | ConvertFrom-Json"
    return json.loads(literal_text(literal))


def check_role_scripts(plan: WindowsPlan) -> None:
    for name, params in role_script_params(plan).items():
        raw = script(name, params).get_raw_value()
        assert lint(raw) == [], f"{name}: {lint(raw)}"
        assert params_sent(raw) == json.loads(json.dumps(params)), name


def check_uploads(plan: WindowsPlan) -> None:
    """Each file's upload bootstrap (comfyinfra.windows.winrm) parses and names the file's destination."""
    for artifact in windows_artifacts(plan):
        bootstrap = put_bootstrap(artifact.dest, sha256(artifact.render()))
        assert lint(bootstrap) == [], lint(bootstrap)
        (encoded,) = literals(assignments(bootstrap)["dest"])
        assert base64.b64decode(literal_text(encoded)).decode() == artifact.dest


def check_winrm(spec: WindowsHostSpec) -> None:
    """The endpoint as requests (pywinrm's transport) parses it: the declared host and port, https by default."""
    target = winrm_target(HOST, spec.winrm, {spec.winrm.password_env: "password"})
    url = requests.Request("POST", target.endpoint).prepare().url
    split = urlsplit(url)
    assert (split.scheme, split.hostname, split.port, split.path) == (
        spec.winrm.scheme, spec.winrm.host.lower(), spec.winrm.port, "/wsman"), url
    assert (target.user, target.transport, target.ca_trust_path) == (
        spec.winrm.user, spec.winrm.transport, spec.winrm.ca_trust_path)


def everything_holds(spec: WindowsHostSpec) -> None:
    try:
        plan = make_windows_plan(HOST, spec, FRONTED_PLAN)
    except PlanError:
        return  # refused with a message naming the field (comfyinfra.windows.plan.FrontedHostError)
    files = {ntpath.basename(a.dest): a.render().decode("ascii") for a in windows_artifacts(plan)}
    assert set(files) == FILES, "a new file: read it back here too"
    check_paths(plan)
    check_web_config(plan, files["web.config"])
    check_installer(plan, files["Install-ComfyProxy.ps1"])
    check_watchdog(plan, files["comfyui-watchdog.ps1"])
    check_task(plan, files["comfyui-watchdog.xml"])
    check_wslconfig(files[".wslconfig"])
    check_role_scripts(plan)
    check_uploads(plan)
    check_winrm(spec)


def refused_or_intact(path: tuple, value: str, overrides: dict) -> bool:
    """True when accepted (and everything then holds), False when refused (without showing a secret)."""
    spec, problems = spec_or_refusal(host_data(path, value, overrides))
    if spec is None:
        if path in SECRET_FIELDS:
            assert not reveals(path, value, problems, overrides), f"a refusal of {path} shows the value: {problems}"
        return False
    everything_holds(spec)
    return True


# --- the tests ----------------------------------------------------------------------------------------------

def _ids(cases: list) -> list[str]:
    return [f"{'.'.join(map(str, case[0]))}={case[1]}" for case in cases]


def test_every_string_field_of_the_windows_spec_is_covered():
    declared = set(_string_fields(WindowsHostSpec, ()))
    covered = {path for path, _, _ in FIELDS}
    assert declared <= covered, f"string fields without an adversarial case in FIELDS: {sorted(declared - covered)}"


def test_every_script_the_role_sends_is_covered():
    plan = make_windows_plan(HOST, WindowsHostSpec.model_validate(BASE), FRONTED_PLAN)
    assert set(role_script_params(plan)) == {path.stem for path in SCRIPTS.glob("*.ps1")}


@pytest.mark.parametrize("path,valid,overrides", FIELDS, ids=_ids(FIELDS))
def test_a_value_is_refused_or_reaches_everything_intact(path, valid, overrides):
    assert refused_or_intact(path, valid, overrides), "the valid value itself is refused"

    @settings(max_examples=30, derandomize=True, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
    @given(value=windows_adversarial(valid))
    def refused_or_intact_(value):
        refused_or_intact(path, value, overrides)

    refused_or_intact_()


@pytest.mark.parametrize("path,value,overrides,why", TRAPS, ids=_ids(TRAPS))
def test_values_that_broke_a_reader_are_refused(path, value, overrides, why):
    spec, problems = spec_or_refusal(host_data(path, value, overrides))
    assert spec is None, f"accepted, but {why}"
    assert any("allowed" in problem for problem in problems), problems


PASSWORD = "Tr0ub4dor&3-horse"


def test_the_task_password_is_masked_and_arrives_intact():
    plan = make_windows_plan(HOST, WindowsHostSpec.model_validate(BASE), FRONTED_PLAN)
    params = role_script_params(plan)["register-task"]
    shown = script("register-task", params, password=PASSWORD).get_masked_value()

    @settings(max_examples=30, derandomize=True, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(password=windows_adversarial(PASSWORD) | st.text(min_size=1, max_size=40))
    def masked_and_intact(password):
        command = script("register-task", params, password=password)
        assert command.get_masked_value() == shown  # what pyinfra prints does not depend on the password at all
        raw = command.get_raw_value()
        assert lint(raw) == [], lint(raw)
        (encoded,) = literals(assignments(raw)["Password"])
        assert base64.b64decode(literal_text(encoded)).decode("utf-8") == password
        assert params_sent(raw) == json.loads(json.dumps(params))

    masked_and_intact()


def test_a_password_that_is_not_text_is_refused_before_connecting(monkeypatch):
    # Bytes that are not UTF-8 in the environment reach Python as lone surrogates (PEP 383), which no encoder takes:
    # the deploy would stop halfway, in script() or in NTLM, with a traceback instead of a sentence.
    monkeypatch.setenv("WIN3090_WINRM_PASSWORD", PASSWORD)
    monkeypatch.setenv("WIN3090_COMFY_PASSWORD", PASSWORD + "\udcff")
    _, problems = check_host(HOST, host_data(("wsl_distro",), "Ubuntu", {}), {}, require_secrets=True)
    assert [problem.field for problem in problems] == ["wsl_user_password_env"]
    assert "WIN3090_COMFY_PASSWORD" in str(problems[0]) and PASSWORD[:6] not in str(problems[0])
