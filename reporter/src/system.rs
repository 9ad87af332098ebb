//! What the machine itself says: OS facts, the Group Policy consent level,
//! an endpoint and token set by policy, and where machine-wide data lives.
//!
//! On Windows these come from the registry (the [`registry`] module, the
//! only code here that differs by platform):
//!
//! | fact | where |
//! | --- | --- |
//! | product | `HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion` `ProductName` (a build of 22000 or later that still says "Windows 10" is Windows 11, which never changed the value) |
//! | version | same key: `CurrentMajorVersionNumber`.`CurrentMinorVersionNumber`.`CurrentBuild` (before Windows 10: `CurrentVersion`.`CurrentBuild`) |
//! | revision | same key: `UBR` |
//! | display version | same key: `DisplayVersion` (e.g. `22H2`), shown by `reporter show`; the envelope has no field for it |
//! | locale | `HKU\.DEFAULT\Control Panel\International` `LocaleName` (the system accounts' locale), else the same under `HKCU` |
//! | arch | `HKLM\SYSTEM\CurrentControlSet\Control\Session Manager\Environment` `PROCESSOR_ARCHITECTURE` (`AMD64`, `x86`, `ARM64`) |
//! | consent | `HKLM\SOFTWARE\Policies\Microsoft\Windows\DataCollection` `AllowTelemetry` (see [`crate::consent`]) |
//! | endpoint, token | `HKLM\SOFTWARE\Policies\Reporter` `Endpoint`, `Token` (both `REG_SZ`) |
//!
//! A value that is missing or of the wrong type is simply not known; the
//! configuration's `[os]` table and the command-line flags override every
//! fact, and built-in defaults fill what nobody knows. Elsewhere the machine
//! says nothing and the configuration decides.

use std::path::PathBuf;

use schemas::build::BuildVersion;

use crate::config::OsSettings;

#[cfg(windows)]
mod registry;

/// The Group Policy key that may hold the reporter's endpoint and token.
pub const POLICY_KEY: &str = r"SOFTWARE\Policies\Reporter";

/// Everything the machine says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Machine {
    /// OS facts found on the machine.
    pub os: OsSettings,
    /// `DisplayVersion`, e.g. `22H2`.
    pub display_version: Option<String>,
    /// Group Policy `AllowTelemetry`, when set.
    pub allow_telemetry: Option<u32>,
    /// Ingest's URL set by policy (overrides the file's `endpoint`).
    pub endpoint: Option<String>,
    /// The enrollment token set by policy (overrides the file's `token`).
    pub token: Option<String>,
}

impl Machine {
    /// Reads the machine (the registry on Windows; nothing elsewhere).
    pub fn read() -> Machine {
        #[cfg(windows)]
        return registry::read();
        #[cfg(not(windows))]
        Machine::default()
    }
}

/// Raw OS values as the registry holds them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawOs {
    pub product_name: Option<String>,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// `CurrentVersion`, e.g. `6.3`, for systems before Windows 10.
    pub current_version: Option<String>,
    pub build: Option<String>,
    pub ubr: Option<u32>,
    pub locale: Option<String>,
    pub processor_architecture: Option<String>,
}

/// The OS facts `raw` gives, each only when it is usable.
pub fn os_settings(raw: &RawOs) -> OsSettings {
    let build = raw
        .build
        .as_deref()
        .map(str::trim)
        .and_then(|b| b.parse::<u32>().ok());
    let major_minor = match (raw.major, raw.minor) {
        (Some(major), Some(minor)) => Some(format!("{major}.{minor}")),
        _ => raw
            .current_version
            .as_deref()
            .map(str::trim)
            .map(str::to_string),
    };
    let product = raw
        .product_name
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty() && p.len() <= 128)
        .map(|p| match p.strip_prefix("Windows 10") {
            Some(rest) if build.is_some_and(|b| b >= 22000) => format!("Windows 11{rest}"),
            _ => p.to_string(),
        })
        // The edge takes only editions' words; an edition named otherwise
        // is sent as `Windows`, not refused with the report.
        .map(|p| {
            if schemas::forms::os_product(&p) {
                p
            } else {
                "Windows".to_string()
            }
        });
    let arch = raw
        .processor_architecture
        .as_deref()
        .and_then(|a| match a.trim().to_ascii_uppercase().as_str() {
            "AMD64" => Some("x64"),
            "X86" => Some("x86"),
            "ARM64" => Some("arm64"),
            _ => None,
        })
        .map(str::to_string);
    OsSettings {
        product,
        // Only a version in the form the edge takes.
        version: major_minor
            .zip(build)
            .map(|(mm, build)| format!("{mm}.{build}"))
            .filter(|version| BuildVersion::parse_os(version, 0).is_some()),
        revision: raw.ubr,
        locale: raw
            .locale
            .as_deref()
            .map(str::trim)
            .filter(|l| schemas::forms::locale(l))
            .map(str::to_string),
        arch,
    }
}

/// `%ProgramData%\Reporter`: the machine-wide folder of the configuration,
/// the queue and the machine id. `None` where there is no `ProgramData`.
pub fn program_data_dir() -> Option<PathBuf> {
    if !cfg!(windows) {
        return None;
    }
    std::env::var_os("ProgramData")
        .filter(|p| !p.is_empty())
        .map(|p| PathBuf::from(p).join("Reporter"))
}

/// The standard folders of Windows Error Reporting under `%ProgramData%`:
/// `ReportArchive` (sent or kept reports) and `ReportQueue` (waiting).
pub fn wer_dirs() -> Vec<PathBuf> {
    let Some(data) = std::env::var_os("ProgramData").filter(|p| !p.is_empty()) else {
        return Vec::new();
    };
    let wer = PathBuf::from(data).join(r"Microsoft\Windows\WER");
    vec![wer.join("ReportArchive"), wer.join("ReportQueue")]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows10() -> RawOs {
        RawOs {
            product_name: Some("Windows 10 Enterprise G".into()),
            major: Some(10),
            minor: Some(0),
            current_version: Some("6.3".into()),
            build: Some("19045".into()),
            ubr: Some(3570),
            locale: Some("zh-CN".into()),
            processor_architecture: Some("AMD64".into()),
        }
    }

    #[test]
    fn registry_values_become_os_facts() {
        let os = os_settings(&windows10());
        assert_eq!(os.product.as_deref(), Some("Windows 10 Enterprise G"));
        assert_eq!(os.version.as_deref(), Some("10.0.19045"));
        assert_eq!(os.revision, Some(3570));
        assert_eq!(os.locale.as_deref(), Some("zh-CN"));
        assert_eq!(os.arch.as_deref(), Some("x64"));
    }

    #[test]
    fn only_what_the_edge_takes_is_sent() {
        // An edition named in words the edge does not take (here a
        // customised build carrying a person's name) is sent as `Windows`,
        // and a locale in another case is left to the configuration: the
        // edge would refuse the report for either.
        let raw = RawOs {
            product_name: Some("Windows 10 Enterprise for Zhang Wei".into()),
            locale: Some("zh-cn".into()),
            ..windows10()
        };
        let os = os_settings(&raw);
        assert_eq!(os.product.as_deref(), Some("Windows"));
        assert_eq!(os.locale, None);
    }

    #[test]
    fn windows_11_is_named_by_its_build() {
        let raw = RawOs {
            build: Some("22631".into()),
            ..windows10()
        };
        let os = os_settings(&raw);
        assert_eq!(os.product.as_deref(), Some("Windows 11 Enterprise G"));
        assert_eq!(os.version.as_deref(), Some("10.0.22631"));
    }

    #[test]
    fn older_systems_and_odd_values_give_what_they_can() {
        let raw = RawOs {
            product_name: Some("Microsoft Windows 7".into()),
            major: None,
            minor: None,
            current_version: Some("6.1".into()),
            build: Some("7601".into()),
            ubr: None,
            locale: Some("not a locale!".into()),
            processor_architecture: Some("IA64".into()),
        };
        let os = os_settings(&raw);
        assert_eq!(os.version.as_deref(), Some("6.1.7601"));
        assert_eq!(os.revision, None);
        assert_eq!(os.locale, None);
        assert_eq!(os.arch, None);
        assert_eq!(os_settings(&RawOs::default()), OsSettings::default());
    }
}
