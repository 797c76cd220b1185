#Requires -RunAsAdministrator
<#
  Managed by comfyinfra: IIS in front of ComfyUI in WSL, for Windows PowerShell 5.1. Idempotent: it prints
  one line "CHANGED: <what>" per change it makes, and nothing when everything already holds. With -Check it
  changes nothing and prints "DRIFT: <what>" for each difference instead (the deploy's dry run).

  URL Rewrite 2.1, Application Request Routing 3.0 (and the IIS CORS Module when CORS origins are set) are
  MSI installs of their own; this script stops with the download page of any that is missing.
#>
[CmdletBinding()]
param(
    # Report each difference as "DRIFT: <what>" and change nothing.
    [switch]$Check
)
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

# Values from the inventory, written in by comfyinfra; nothing but -Check can be given on the command line.
$SiteName = 'ComfyUI'
$HostName = 'comfy.example.com'
$SitePath = 'C:\inetpub\comfyui'
$WebConfigPath = 'C:\inetpub\comfyui\web.config'
$WebConfigSource = 'C:\ProgramData\comfyinfra\iis\web.config'
$CertThumbprint = $null
$CertSubject = 'CN=*.example.com'
$ProxyTimeout = [TimeSpan]::FromSeconds(3600)
# The server variables web.config's proxy rule sets; each must be allowed at server level.
$ServerVariables = @('HTTP_X_FORWARDED_PROTO', 'HTTP_X_FORWARDED_HOST', 'HTTP_SEC_WEBSOCKET_EXTENSIONS')
# Client SKU (Windows 11): optional features, not Install-WindowsFeature. IIS-WebSockets is what lets ARR
# relay ComfyUI's /ws.
$Features = @(
    'IIS-WebServerRole', 'IIS-WebServer', 'IIS-CommonHttpFeatures', 'IIS-HttpErrors', 'IIS-RequestFiltering',
    'IIS-HttpLogging', 'IIS-WebSockets', 'IIS-ManagementConsole', 'IIS-ManagementScriptingTools'
)
# Modules installed from their own MSI, found by their configuration schema. The marker is an attribute only
# the required version has (useOriginalURLEncoding: URL Rewrite 2.1; web.config uses it, 2.0 answers 500.19).
$Modules = @(
    @{ Name = 'URL Rewrite 2.1'; Schema = 'rewrite_schema.xml'; Marker = 'useOriginalURLEncoding'
       Download = 'https://www.iis.net/downloads/microsoft/url-rewrite' },
    @{ Name = 'Application Request Routing 3.0'; Schema = 'arr_schema.xml'; Marker = $null
       Download = 'https://www.iis.net/downloads/microsoft/application-request-routing' }
)
# Sections web.config uses that applicationHost.config locks by default: unlocked for this site only.
$UnlockedSections = @()
$BasicAuth = $false

$AppHost = 'MACHINE/WEBROOT/APPHOST'
$script:Drifts = 0

function Set-State {
    # One desired state: $Holds says whether it holds, $Apply makes it hold. A $Holds that throws counts as
    # "does not hold" (with -Check, what it reads may not exist yet; without, $Apply then creates it).
    param([string]$What, [scriptblock]$Holds, [scriptblock]$Apply)
    $holding = $false
    try { $holding = [bool](& $Holds) } catch { $holding = $false }
    if ($holding) { return }
    $script:Drifts++
    if ($Check) {
        Write-Output "DRIFT: $What"
        return
    }
    & $Apply | Out-Null
    Write-Output "CHANGED: $What"
}

function Test-Same {
    # IIS hands values back as bool, int, TimeSpan, string or an enum's name: compared by their text, against
    # each accepted form (e.g. sslFlags 1 reads back as Sni).
    param($Actual, [object[]]$Wanted)
    if ($null -eq $Actual) { return $false }
    foreach ($candidate in $Wanted) {
        if ([string]$Actual -eq [string]$candidate) { return $true }
    }
    return $false
}

function Get-ConfigValue {
    param([string]$Filter, [string]$Name, [string]$Location = '')
    $value = Get-WebConfigurationProperty -PSPath $AppHost -Location $Location -Filter $Filter -Name $Name
    # Some attributes come back as a ConfigurationAttribute holding the value, others as the value itself.
    if ($null -ne $value -and $value.PSObject.Properties['Value']) { return $value.Value }
    return $value
}

function Set-ConfigValue {
    param([string]$Filter, [string]$Name, $Value, [string]$Location = '')
    Set-WebConfigurationProperty -PSPath $AppHost -Location $Location -Filter $Filter -Name $Name -Value $Value
}

function Find-Certificate {
    $store = 'Cert:\LocalMachine\My'
    if ($CertThumbprint) {
        $described = "with thumbprint $CertThumbprint"
        $found = @(Get-ChildItem -Path $store | Where-Object { $_.Thumbprint -eq $CertThumbprint })
    } else {
        # The newest valid one: a renewed certificate imported beside the old one is taken by the next deploy.
        $described = "with subject $CertSubject, a private key and valid today"
        $now = Get-Date
        $found = @(Get-ChildItem -Path $store |
            Where-Object { (($_.Subject -split ',\s*') -contains $CertSubject) -and $_.HasPrivateKey -and
                           $_.NotBefore -le $now -and $_.NotAfter -gt $now } |
            Sort-Object -Property NotBefore -Descending)
    }
    if ($found.Count -eq 0) {
        throw ("No certificate {0} in {1}. Import it with its private key (Import-PfxCertificate " +
               "-CertStoreLocation {1}), or correct site.certificate in the inventory.") -f $described, $store
    }
    $certificate = $found[0]
    if (-not $certificate.HasPrivateKey) {
        throw ("The certificate {0} in {1} has no private key, so IIS can't serve HTTPS with it. Import the PFX " +
               "file (certificate and key) again.") -f $described, $store
    }
    if ($certificate.NotAfter -lt (Get-Date)) {
        throw ("The certificate {0} expired on {1:u}. Import the renewed one, and set its thumbprint in the " +
               "inventory (or use the subject).") -f $described, $certificate.NotAfter
    }
    if ($certificate.NotAfter -lt (Get-Date).AddDays(14)) {
        Write-Warning ('The certificate {0} expires on {1:u}: renew it.' -f $certificate.Thumbprint, $certificate.NotAfter)
    }
    return $certificate
}

function Test-Started {
    param([scriptblock]$State)
    try { return ((& $State).Value -eq 'Started') } catch { return $false }
}

# (With -Check a missing source is one more drift, reported by step 10.)
if (-not $Check -and -not (Test-Path -LiteralPath $WebConfigSource -PathType Leaf)) {
    throw "$WebConfigSource is missing: the deploy uploads it before it runs this script. Run the deploy again."
}

# --- 1. Windows features
foreach ($feature in $Features) {
    Set-State "Windows feature $feature enabled" {
        (Get-WindowsOptionalFeature -Online -FeatureName $feature).State -eq 'Enabled'
    } {
        # Enabling IIS-WebSockets restarts W3SVC and WAS.
        $result = Enable-WindowsOptionalFeature -Online -FeatureName $feature -All -NoRestart
        if ($result.RestartNeeded) { Write-Warning "Windows asks for a restart to finish enabling $feature." }
    }
}
if ($Check -and $script:Drifts -gt 0) {
    # Without IIS there is nothing further to compare.
    Write-Output 'DRIFT: the IIS configuration (compared once the Windows features above are enabled)'
    return
}

# --- 2. Modules from their own MSI (a PowerShell process started before their install can't see their
#        configuration sections: the deploy runs this script in a new one)
$schemaDir = Join-Path $env:windir 'System32\inetsrv\config\schema'
$missing = @(foreach ($module in $Modules) {
    $schema = Join-Path $schemaDir $module.Schema
    if (-not (Test-Path -LiteralPath $schema -PathType Leaf) -or
        ($module.Marker -and -not (Select-String -LiteralPath $schema -SimpleMatch -Pattern $module.Marker -Quiet))) {
        '{0} ({1})' -f $module.Name, $module.Download
    }
})
if ($missing.Count -gt 0) {
    throw ('Not installed on this machine: {0}. Install each from its page (the x64 MSI), then run the deploy ' +
           'again.') -f ($missing -join '; ')
}

Import-Module WebAdministration

# --- 3. ARR proxy, at server level: a proxy section in a site web.config is not where ARR reads it
$ProxySettings = [ordered]@{
    enabled = $true
    # Without it ComfyUI sees Host 127.0.0.1:<port> and its origin check answers 403 to every browser POST
    # and to the /ws handshake.
    preserveHostHeader = $true
    reverseRewriteHostInResponseHeaders = $false
    includePortInXForwardedFor = $false
    # Hides the X-Powered-By: ARR header.
    arrResponseHeader = $false
    # Default 2 minutes; idle /ws connections and slow uploads outlive it.
    timeout = $ProxyTimeout
}
foreach ($name in $ProxySettings.Keys) {
    $wanted = $ProxySettings[$name]
    Set-State "ARR proxy $name = $wanted (server level)" {
        Test-Same (Get-ConfigValue 'system.webServer/proxy' $name) $wanted
    } {
        Set-ConfigValue 'system.webServer/proxy' $name $wanted
    }
}

# --- 4. The server variables the proxy rule sets (else URL Rewrite answers 500.50)
$variablesFilter = 'system.webServer/rewrite/allowedServerVariables'
foreach ($variable in $ServerVariables) {
    Set-State "server variable $variable allowed in rewrite rules (server level)" {
        $null -ne (Get-WebConfiguration -PSPath $AppHost -Filter "$variablesFilter/add[@name='$variable']")
    } {
        Add-WebConfigurationProperty -PSPath $AppHost -Filter $variablesFilter -Name '.' -Value @{ name = $variable }
    }
}

# --- 5. Application pool: ARR runs inside this w3wp, so a recycle or an idle shutdown drops every /ws
$poolFilter = "system.applicationHost/applicationPools/add[@name='$SiteName']"
Set-State "application pool $SiteName" { Test-Path -Path "IIS:\AppPools\$SiteName" } {
    New-WebAppPool -Name $SiteName
}
# No managed code: URL Rewrite and ARR are native modules.
Set-State "application pool $SiteName without managed code" {
    Test-Same (Get-ConfigValue $poolFilter 'managedRuntimeVersion') ''
} {
    Set-ConfigValue $poolFilter 'managedRuntimeVersion' ''
}
Set-State "application pool $SiteName always running" {
    Test-Same (Get-ConfigValue $poolFilter 'startMode') @('AlwaysRunning', 1)
} {
    Set-ConfigValue $poolFilter 'startMode' 'AlwaysRunning'
}
Set-State "application pool $SiteName without idle timeout" {
    Test-Same (Get-ConfigValue "$poolFilter/processModel" 'idleTimeout') ([TimeSpan]::Zero)
} {
    Set-ConfigValue "$poolFilter/processModel" 'idleTimeout' ([TimeSpan]::Zero)
}
Set-State "application pool $SiteName without periodic recycling" {
    Test-Same (Get-ConfigValue "$poolFilter/recycling/periodicRestart" 'time') ([TimeSpan]::Zero)
} {
    Set-ConfigValue "$poolFilter/recycling/periodicRestart" 'time' ([TimeSpan]::Zero)
}

# --- 6. Site, its directory and its bindings (http only to redirect; https with SNI)
Set-State "site directory $SitePath" { Test-Path -LiteralPath $SitePath -PathType Container } {
    New-Item -ItemType Directory -Force -Path $SitePath
}
$siteFilter = "system.applicationHost/sites/site[@name='$SiteName']"
Set-State "site $SiteName" { Test-Path -Path "IIS:\Sites\$SiteName" } {
    New-Website -Name $SiteName -PhysicalPath $SitePath -ApplicationPool $SiteName -HostHeader $HostName `
        -Port 80 -IPAddress '*'
}
Set-State "site $SiteName serving $SitePath" {
    Test-Same (Get-ConfigValue "$siteFilter/application[@path='/']/virtualDirectory[@path='/']" 'physicalPath') $SitePath
} {
    Set-ItemProperty -Path "IIS:\Sites\$SiteName" -Name 'physicalPath' -Value $SitePath
}
Set-State "site $SiteName in application pool $SiteName" {
    Test-Same (Get-ConfigValue "$siteFilter/application[@path='/']" 'applicationPool') $SiteName
} {
    Set-ItemProperty -Path "IIS:\Sites\$SiteName" -Name 'applicationPool' -Value $SiteName
}
$httpBinding = "*:80:$HostName"
$httpsBinding = "*:443:$HostName"
# Bindings are read from the configuration by XPath: exactly this site's, even when it does not exist yet.
$httpFilter = "$siteFilter/bindings/binding[@protocol='http' and @bindingInformation='$httpBinding']"
$httpsFilter = "$siteFilter/bindings/binding[@protocol='https' and @bindingInformation='$httpsBinding']"
Set-State "site $SiteName binding http $httpBinding" {
    $null -ne (Get-WebConfiguration -PSPath $AppHost -Filter $httpFilter)
} {
    New-WebBinding -Name $SiteName -Protocol 'http' -Port 80 -IPAddress '*' -HostHeader $HostName
}
Set-State "site $SiteName binding https $httpsBinding" {
    $null -ne (Get-WebConfiguration -PSPath $AppHost -Filter $httpsFilter)
} {
    New-WebBinding -Name $SiteName -Protocol 'https' -Port 443 -IPAddress '*' -HostHeader $HostName -SslFlags 1
}
# SNI (sslFlags 1): the certificate is chosen by host name, so other sites can share port 443.
Set-State "site $SiteName binding https $httpsBinding with SNI" {
    Test-Same (Get-ConfigValue $httpsFilter 'sslFlags') @(1, 'Sni')
} {
    Set-ConfigValue $httpsFilter 'sslFlags' 1
}
foreach ($binding in @(Get-WebConfiguration -PSPath $AppHost -Filter "$siteFilter/bindings/binding")) {
    $key = '{0} {1}' -f $binding.protocol, $binding.bindingInformation
    if (@("http $httpBinding", "https $httpsBinding") -contains $key) { continue }
    Set-State "site $SiteName without the binding $key" { $false } {
        Remove-WebBinding -Name $SiteName -Protocol $binding.protocol -BindingInformation $binding.bindingInformation
    }
}

# --- 7. The certificate of the https binding, from Cert:\LocalMachine\My
$thumbprint = (Find-Certificate).Thumbprint.ToUpperInvariant()
Set-State "certificate $thumbprint on https $httpsBinding" {
    $https = Get-WebBinding -Name $SiteName -Protocol 'https' -Port 443 -HostHeader $HostName
    ([string]$https.certificateHash).ToUpperInvariant() -eq $thumbprint
} {
    $https = Get-WebBinding -Name $SiteName -Protocol 'https' -Port 443 -HostHeader $HostName
    if ($https.certificateHash) { $https.RemoveSslCertificate() }
    $https.AddSslCertificate($thumbprint, 'My')
}

# --- 8. Sections web.config sets that are locked by default: allowed for this site only, at server level
foreach ($section in $UnlockedSections) {
    Set-State "section $section may be set by the web.config of site $SiteName" {
        (Get-WebConfiguration -PSPath $AppHost -Location $SiteName -Filter $section -Metadata).Metadata.effectiveOverrideMode -eq 'Allow'
    } {
        Set-WebConfiguration -PSPath $AppHost -Location $SiteName -Filter $section -Metadata 'overrideMode' -Value 'Allow'
    }
}

# --- 9. Authentication, at server level for this site (the sections are locked for web.config)
$anonymousFilter = 'system.webServer/security/authentication/anonymousAuthentication'
$basicFilter = 'system.webServer/security/authentication/basicAuthentication'
if ($BasicAuth) {
    # Windows accounts, over HTTPS only (http just redirects). CORS preflights carry no credentials: the
    # CORS module answers them before authentication.
    Set-State "basic authentication on for site $SiteName" {
        Test-Same (Get-ConfigValue $basicFilter 'enabled' $SiteName) $true
    } {
        Set-ConfigValue $basicFilter 'enabled' $true $SiteName
    }
    Set-State "anonymous authentication off for site $SiteName" {
        Test-Same (Get-ConfigValue $anonymousFilter 'enabled' $SiteName) $false
    } {
        Set-ConfigValue $anonymousFilter 'enabled' $false $SiteName
    }
} else {
    Set-State "anonymous authentication on for site $SiteName" {
        Test-Same (Get-ConfigValue $anonymousFilter 'enabled' $SiteName) $true
    } {
        Set-ConfigValue $anonymousFilter 'enabled' $true $SiteName
    }
}

# --- 10. web.config: copied only when it differs (IIS restarts the site's configuration on every write)
Set-State "web.config of site $SiteName equal to $WebConfigSource" {
    (Test-Path -LiteralPath $WebConfigPath -PathType Leaf) -and
        ((Get-FileHash -LiteralPath $WebConfigPath -Algorithm SHA256).Hash -eq
         (Get-FileHash -LiteralPath $WebConfigSource -Algorithm SHA256).Hash)
} {
    Copy-Item -LiteralPath $WebConfigSource -Destination $WebConfigPath -Force
}

# --- 11. Running
Set-State "application pool $SiteName started" { Test-Started { Get-WebAppPoolState -Name $SiteName } } {
    Start-WebAppPool -Name $SiteName
}
Set-State "site $SiteName started" { Test-Started { Get-WebsiteState -Name $SiteName } } {
    Start-Website -Name $SiteName
}
