"""The Windows host's files (templates/windows/, from comfyinfra.windows.artifacts), read back by real parsers:
web.config by lxml, the scheduled task by xmlschema against the project's Task Scheduler schema subset, every
PowerShell script by tree-sitter's PowerShell grammar plus the lint of tests/support/powershell_lint.py. Three
configurations are also kept as golden renders (tests/unit/golden/windows/<config>/<file>), compared byte for byte:
a change to a template shows up in review as a change to these files (COMFYINFRA_UPDATE_GOLDEN=1 rewrites them).
"""

from __future__ import annotations

import ntpath
import os
import re
from pathlib import Path

import pytest
import xmlschema
from lxml import etree

from comfyinfra.plan import plan_without_host
from comfyinfra.spec import HostSpec
from comfyinfra.windows.artifacts import windows_artifacts
from comfyinfra.windows.plan import make_windows_plan
from comfyinfra.windows.spec import WindowsHostSpec
from tests.support.powershell_lint import PARSER, lint
from tests.unit.test_plan import BASE

GOLDEN = Path(__file__).parent / "golden" / "windows"
TASK_SCHEMA = Path(__file__).parents[1] / "support" / "task_scheduler_subset.xsd"
TASK_NS = {"t": "http://schemas.microsoft.com/windows/2004/02/mit/task"}

FRONTED = {**BASE, "host_kind": "wsl", "platform_arch": "x86_64", "platform_init": "systemd"}
WINDOWS = {
    "host_kind": "windows", "fronts": "wsl-3090",
    "winrm": {"host": "win3090.example.com", "user": "WIN3090\\deploy", "password_env": "WIN3090_WINRM_PASSWORD"},
    "site": {"host_name": "comfy.example.com",
             "certificate": {"thumbprint": "0123456789abcdef0123456789abcdef01234567"}},
    "wsl_user": "WIN3090\\comfy", "wsl_user_password_env": "WIN3090_COMFY_PASSWORD",
}
# (Windows host overrides, fronted WSL host overrides) per golden configuration.
CONFIGS = {
    "defaults": ({}, {}),
    "cors-auth-limits": ({
        "cors_origins": ["https://app.example.com", "https://tools.example.org:8443"], "basic_auth": True,
        "allowed_ips": ["192.168.1.0/24", "10.20.30.40/32", "2001:db8:1234::/48"],
        "rate_limit": {"max_concurrent_requests": 10, "max_requests": 120, "interval_ms": 5000},
        "site": {"host_name": "comfy.example.com", "certificate": {"subject": "CN=*.example.com"}},
    }, {}),
    "port-limit-supervisor": ({"upload_limit_mb": 500, "wsl_distro": "Ubuntu-24.04"},
                              {"port": 8288, "max_upload_size_mb": 512, "platform_init": "other"}),
}


def artifacts(windows: dict | None = None, fronted: dict | None = None):
    fronted_plan = plan_without_host(HostSpec.model_validate({**FRONTED, **(fronted or {})}))
    spec = WindowsHostSpec.model_validate({**WINDOWS, **(windows or {})})
    return windows_artifacts(make_windows_plan("win-3090", spec, fronted_plan))


def rendered(windows: dict | None = None, fronted: dict | None = None) -> dict[str, str]:
    """{file name: text} of one Windows host."""
    return {ntpath.basename(artifact.dest): artifact.render().decode("ascii")
            for artifact in artifacts(windows, fronted)}


def config(name: str) -> dict[str, str]:
    return rendered(*CONFIGS[name])


def web_config(files: dict[str, str]) -> etree._Element:
    return etree.fromstring(files["web.config"].encode())


def elements(parent: etree._Element) -> list[etree._Element]:
    """The child elements, without comments."""
    return [child for child in parent if isinstance(child.tag, str)]


def powershell_variable(script: str, name: str) -> str:
    """The right-hand side of the one top-level `$Name = ...` line."""
    (value,) = re.findall(rf"^\${name} = (.+)$", script, re.MULTILINE)
    return value


# --- golden renders -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_golden_renders(name):
    files = config(name)
    directory = GOLDEN / name
    if os.environ.get("COMFYINFRA_UPDATE_GOLDEN") == "1":
        directory.mkdir(parents=True, exist_ok=True)
        for stale in {path.name for path in directory.iterdir()} - set(files):
            (directory / stale).unlink()
        for file_name, text in files.items():
            (directory / file_name).write_bytes(text.encode("ascii"))
    kept = {path.name: path.read_bytes() for path in directory.iterdir()} if directory.is_dir() else {}
    fix = ("if the change is intended, rewrite them: COMFYINFRA_UPDATE_GOLDEN=1 pytest "
           "tests/unit/test_windows_artifacts.py, and review the diff")
    assert set(kept) == set(files), f"golden files of {name} differ in names from the render; {fix}"
    for file_name, text in files.items():
        assert kept[file_name] == text.encode("ascii"), f"{name}/{file_name} differs from its golden render; {fix}"


def test_every_file_is_ascii_in_every_configuration():
    for name in CONFIGS:
        for file_name, text in config(name).items():
            assert text.isascii(), f"{name}/{file_name}"


# --- web.config -------------------------------------------------------------------------------------------

def test_web_config_rewrites_to_the_fronted_hosts_port_keeping_the_encoded_url():
    for name, port in (("defaults", 8188), ("port-limit-supervisor", 8288)):
        root = web_config(config(name))
        rules = root.find("system.webServer/rewrite/rules")
        assert rules.get("useOriginalURLEncoding") == "false"
        names = [rule.get("name") for rule in rules.findall("rule")]
        assert names == ["ForceHttps", "ComfyUIProxy"]  # the redirect first; no OPTIONS rule without CORS
        redirect = rules.find("rule[@name='ForceHttps']")
        assert redirect.find("conditions/add").attrib == {"input": "{HTTPS}", "pattern": "^OFF$"}
        assert redirect.find("action").attrib == {
            "type": "Redirect", "url": "https://comfy.example.com{UNENCODED_URL}", "appendQueryString": "false",
            "redirectType": "Permanent"}
        action = rules.find("rule[@name='ComfyUIProxy']/action")
        assert action.attrib == {"type": "Rewrite", "url": f"http://127.0.0.1:{port}{{UNENCODED_URL}}",
                                 "appendQueryString": "false"}


def test_web_config_sets_the_forwarding_variables_and_blanks_websocket_compression():
    proxy = web_config(config("defaults")).find("system.webServer/rewrite/rules/rule[@name='ComfyUIProxy']")
    variables = {item.get("name"): item.get("value") for item in proxy.findall("serverVariables/set")}
    assert variables == {"HTTP_X_FORWARDED_PROTO": "https", "HTTP_X_FORWARDED_HOST": "{HTTP_HOST}",
                         "HTTP_SEC_WEBSOCKET_EXTENSIONS": ""}


def test_the_installer_allows_exactly_the_server_variables_web_config_sets():
    for name in CONFIGS:
        files = config(name)
        proxy = web_config(files).find("system.webServer/rewrite/rules/rule[@name='ComfyUIProxy']")
        allowed = re.findall(r"'([A-Z_]+)'", powershell_variable(files["Install-ComfyProxy.ps1"], "ServerVariables"))
        assert allowed == [item.get("name") for item in proxy.findall("serverVariables/set")]


def test_web_config_upload_limit_is_in_bytes():
    limits = {name: web_config(config(name)).find("system.webServer/security/requestFiltering") for name in CONFIGS}
    assert limits["defaults"].get("allowDoubleEscaping") == "true"
    assert limits["defaults"].find("requestLimits").get("maxAllowedContentLength") == "104857600"
    custom = limits["port-limit-supervisor"].find("requestLimits")
    assert custom.get("maxAllowedContentLength") == str(500 * 1024 * 1024)


def test_web_config_headers_hsts_without_subdomains_and_no_cors_headers():
    for name in CONFIGS:
        headers = web_config(config(name)).find("system.webServer/httpProtocol/customHeaders")
        assert [(item.tag, item.get("name")) for item in elements(headers)] == [
            ("remove", "X-Powered-By"), ("remove", "Strict-Transport-Security"), ("add", "Strict-Transport-Security")]
        assert headers.find("add").get("value") == "max-age=31536000"
        assert "Access-Control" not in config(name)["web.config"]  # CORS comes from one layer: the CORS module


def test_web_config_has_no_cors_ip_or_rate_limit_sections_by_default():
    server = web_config(config("defaults")).find("system.webServer")
    for path in ("cors", "security/ipSecurity", "security/dynamicIpSecurity", "proxy", "webSocket"):
        assert server.find(path) is None, path


def test_web_config_cors_module_lists_the_origins_with_credentials_for_basic_auth():
    cors = web_config(config("cors-auth-limits")).find("system.webServer/cors")
    assert cors.attrib == {"enabled": "true", "failUnlistedOrigins": "true"}
    origins = cors.findall("add")
    assert [(item.get("origin"), item.get("allowCredentials")) for item in origins] == [
        ("https://app.example.com", "true"), ("https://tools.example.org:8443", "true")]
    for origin in origins:
        assert origin.find("allowHeaders").attrib == {"allowAllRequestedHeaders": "true"}
        assert [item.get("method") for item in origin.findall("allowMethods/add")] == [
            "GET", "POST", "PUT", "DELETE", "OPTIONS"]


def test_web_config_cors_without_basic_auth_sends_no_credentials():
    cors = web_config(rendered({"cors_origins": ["https://app.example.com"]})).find("system.webServer/cors")
    assert [origin.get("allowCredentials") for origin in cors.findall("add")] == [None]


def test_web_config_ip_allow_list_and_rate_limit():
    security = web_config(config("cors-auth-limits")).find("system.webServer/security")
    ip_security = security.find("ipSecurity")
    assert ip_security.get("allowUnlisted") == "false" and ip_security[0].tag == "clear"
    assert [item.attrib for item in ip_security.findall("add")] == [
        {"ipAddress": "127.0.0.1", "allowed": "true"},  # the deploy's own end-to-end check, from the box
        {"ipAddress": "192.168.1.0", "subnetMask": "255.255.255.0", "allowed": "true"},
        {"ipAddress": "10.20.30.40", "subnetMask": "255.255.255.255", "allowed": "true"},
        {"ipAddress": "2001:db8:1234::", "subnetMask": "48", "allowed": "true"}]
    dynamic = security.find("dynamicIpSecurity")
    assert dynamic.get("denyAction") == "Forbidden"
    assert dynamic.find("denyByConcurrentRequests").attrib == {"enabled": "true", "maxConcurrentRequests": "10"}
    assert dynamic.find("denyByRequestRate").attrib == {
        "enabled": "true", "maxRequests": "120", "requestIntervalInMilliseconds": "5000"}


def test_web_config_comments_hold_no_double_hyphen():
    # lxml refuses '--' inside a comment already; the check stays explicit, since IIS answers 500.19 for it.
    for name in CONFIGS:
        root = web_config(config(name))
        comments = [node.text for node in root.iter(etree.Comment)]
        comments += [node.text for node in root.itersiblings(etree.Comment, preceding=True)]
        assert comments and not [text for text in comments if "--" in text]


# --- scheduled task ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def task_schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(TASK_SCHEMA))


def test_task_validates_against_the_task_scheduler_schema(task_schema):
    for name in CONFIGS:
        text = config(name)["comfyui-watchdog.xml"]
        assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>')  # the role reads it as UTF-8
        task_schema.validate(text)


def test_task_runs_the_watchdog_as_the_distros_owner_at_boot_without_time_limit():
    task = etree.fromstring(config("defaults")["comfyui-watchdog.xml"].encode())

    def text(path: str) -> str:
        return task.findtext(path, namespaces=TASK_NS)

    assert text("t:Triggers/t:BootTrigger/t:Delay") == "PT30S"
    assert text("t:Triggers/t:BootTrigger/t:Repetition/t:Interval") == "PT5M"
    assert (text("t:Principals/t:Principal/t:UserId"), text("t:Principals/t:Principal/t:LogonType"),
            text("t:Principals/t:Principal/t:RunLevel")) == ("WIN3090\\comfy", "Password", "HighestAvailable")
    settings = {etree.QName(child).localname: child.text for child in elements(task.find("t:Settings", TASK_NS))}
    assert settings["MultipleInstancesPolicy"] == "IgnoreNew"
    assert settings["DisallowStartIfOnBatteries"] == settings["StopIfGoingOnBatteries"] == "false"
    assert settings["StartWhenAvailable"] == "true" and settings["ExecutionTimeLimit"] == "PT0S"
    assert settings["Priority"] == "7"
    assert (text("t:Settings/t:RestartOnFailure/t:Interval"), text("t:Settings/t:RestartOnFailure/t:Count")) == (
        "PT1M", "3")
    assert text("t:Actions/t:Exec/t:Command") == "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe"
    assert text("t:Actions/t:Exec/t:Arguments") == (
        '-NoProfile -NonInteractive -ExecutionPolicy Bypass -File '
        '"C:\\ProgramData\\comfyinfra\\bin\\comfyui-watchdog.ps1"')


@pytest.mark.parametrize("good, bad", [
    ("<Interval>PT1M</Interval>", "<Interval>PT30S</Interval>"),  # RestartOnFailure: PT1M at least
    ("<RunLevel>HighestAvailable</RunLevel>", "<RunLevel>Highest</RunLevel>"),  # PowerShell's spelling, not XML's
    ("<LogonType>Password</LogonType>", "<LogonType>Pasword</LogonType>"),
    ("<Priority>7</Priority>", "<Priority>11</Priority>"),
    ("<Count>3</Count>", "<Count>0</Count>"),
    ("<ExecutionTimeLimit>PT0S</ExecutionTimeLimit>", "<ExecutionTimeLimit>forever</ExecutionTimeLimit>"),
    ("<MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>",
     "<MultipleInstancesPolicy>Ignore</MultipleInstancesPolicy>"),
    ("<Enabled>true</Enabled>\n      <Repetition>", "<Enabled>yes</Enabled>\n      <Repetition>"),
])
def test_the_task_schema_is_not_a_rubber_stamp(task_schema, good, bad):
    text = config("defaults")["comfyui-watchdog.xml"]
    assert text.count(good) == 1
    assert task_schema.is_valid(text)
    assert not task_schema.is_valid(text.replace(good, bad))


# --- PowerShell -------------------------------------------------------------------------------------------

def test_every_powershell_script_parses_and_lints_clean():
    for name in CONFIGS:
        for file_name, text in config(name).items():
            if file_name.endswith(".ps1"):
                assert lint(text) == [], f"{name}/{file_name}"


def test_the_installer_takes_only_a_check_switch():
    # Values are written in from the view; a parameter could replace one with something nothing checked.
    for name in CONFIGS:
        root = PARSER.parse(config(name)["Install-ComfyProxy.ps1"].encode()).root_node
        (params,) = [node for node in root.children if node.type == "param_block"]
        (parameter_list,) = [child for child in params.children if child.type == "parameter_list"]
        parameters = [node.text.decode() for node in parameter_list.children if node.type == "script_parameter"]
        assert parameters == ["[switch]$Check"]


def test_the_installer_enables_the_optional_parts_only_when_used():
    plain, full = (config(name)["Install-ComfyProxy.ps1"] for name in ("defaults", "cors-auth-limits"))
    for part in ("'IIS-IPSecurity'", "'IIS-BasicAuthentication'", "cors_schema.xml",
                 "'system.webServer/security/ipSecurity'", "'system.webServer/security/dynamicIpSecurity'"):
        assert part not in plain and part in full, part
    assert powershell_variable(plain, "BasicAuth") == "$false" and powershell_variable(full, "BasicAuth") == "$true"
    assert "'IIS-WebSockets'" in plain
    assert powershell_variable(plain, "CertThumbprint") == "'0123456789ABCDEF0123456789ABCDEF01234567'"
    assert powershell_variable(full, "CertSubject") == "'CN=*.example.com'"
    for download in ("url-rewrite", "application-request-routing"):
        assert f"'https://www.iis.net/downloads/microsoft/{download}'" in plain


def test_the_installer_configures_arr_at_server_level():
    script = config("defaults")["Install-ComfyProxy.ps1"]
    for setting in ("enabled = $true", "preserveHostHeader = $true", "reverseRewriteHostInResponseHeaders = $false",
                    "includePortInXForwardedFor = $false", "arrResponseHeader = $false", "timeout = $ProxyTimeout"):
        assert f"\n    {setting}\n" in script, setting
    assert powershell_variable(script, "ProxyTimeout") == "[TimeSpan]::FromSeconds(3600)"
    assert powershell_variable(script, "AppHost") == "'MACHINE/WEBROOT/APPHOST'"


def test_the_watchdog_starts_comfyui_as_root_through_program_files_wsl():
    for name, port, start in (("defaults", 8188, "@('/usr/bin/systemctl', 'start', 'comfyui.service')"),
                              ("port-limit-supervisor", 8288, "@('/bin/sh', '-c', ")):
        script = config(name)["comfyui-watchdog.ps1"]
        assert powershell_variable(script, "Wsl") == "'C:\\Program Files\\WSL\\wsl.exe'"
        assert powershell_variable(script, "HealthUrl") == f"'http://127.0.0.1:{port}/system_stats'"
        assert powershell_variable(script, "StartCommand").startswith(start)
        assert "$env:WSL_UTF8 = '1'" in script and "-UseBasicParsing -TimeoutSec 10" in script
        assert "@('-d', $Distro, '-u', 'root', '--exec') + $StartCommand" in script
    assert powershell_variable(config("port-limit-supervisor")["comfyui-watchdog.ps1"], "Distro") == "'Ubuntu-24.04'"


def test_wslconfig_disables_both_idle_timeouts():
    lines = [line for line in config("defaults")[".wslconfig"].splitlines() if line and not line.startswith("#")]
    assert lines == ["[wsl2]", "vmIdleTimeout=-1", "[general]", "instanceIdleTimeout=-1"]


# --- the lint itself: each rule fires on the trap it is for ---------------------------------------------------

@pytest.mark.parametrize("rule, snippet", [
    ("syntax", "if ($a { Write-Output 1 }\n"),
    ("syntax", "$text = 'unterminated\n"),
    ("var-colon", 'throw "Missing $schema: install it"\n'),
    ("non-ascii", "$quote = 'it\u2019s'\n"),
    ("non-ascii", "# caf\u00e9\n$a = 1\n"),
    ("localhost-url", "$url = 'http://localhost:8188/system_stats'\n"),
    ("wsl-exe", "wsl -d Ubuntu -u root -- systemctl start comfyui\n"),
    ("wsl-exe", "& 'C:\\Windows\\System32\\wsl.exe' -l\n"),
    ("wsl-exe", "$wsl = Join-Path $env:windir 'System32\\wsl.exe'\n"),
    ("wsl-share", "Get-Content '\\\\wsl$\\Ubuntu\\opt\\comfyui\\run.ps1'\n"),
    ("wsl-share", "& \"\\\\wsl.localhost\\$Distro\\tmp\\x.ps1\"\n"),
    ("invoke-expression", "Invoke-Expression $command\n"),
    ("invoke-expression", "iex $command\n"),
])
def test_each_lint_fires_on_its_trap(rule, snippet):
    assert rule in {finding.rule for finding in lint(snippet)}


@pytest.mark.parametrize("snippet", [
    "$a = \"$env:TEMP and ${name}: and $drive:\\path and `$escaped: and $($x):\"\n",
    "$wsl = 'C:\\Program Files\\WSL\\wsl.exe'\n",
    "$wsl = Join-Path $env:ProgramFiles 'WSL\\wsl.exe'\n",
    "$url = 'http://127.0.0.1:8188/system_stats'  # never http://localhost, never System32\\wsl.exe\n",
])
def test_the_lint_passes_what_powershell_reads_as_meant(snippet):
    assert lint(snippet) == []
