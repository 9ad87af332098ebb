//! Reading the machine's facts from the Windows registry (see the table in
//! [`super`]). Every value is read on its own: one that is missing, of the
//! wrong type or unreadable is `None`, never an error.

use windows_registry::{CURRENT_USER, Key, LOCAL_MACHINE, USERS};

use super::{Machine, POLICY_KEY, RawOs, os_settings};

const CURRENT_VERSION: &str = r"SOFTWARE\Microsoft\Windows NT\CurrentVersion";
const ENVIRONMENT: &str = r"SYSTEM\CurrentControlSet\Control\Session Manager\Environment";
const DATA_COLLECTION: &str = r"SOFTWARE\Policies\Microsoft\Windows\DataCollection";
const INTERNATIONAL: &str = r"Control Panel\International";

fn string(key: &Key, path: &str, name: &str) -> Option<String> {
    key.open(path)
        .ok()?
        .get_string(name)
        .ok()
        .filter(|s| !s.trim().is_empty())
}

fn dword(key: &Key, path: &str, name: &str) -> Option<u32> {
    key.open(path).ok()?.get_u32(name).ok()
}

pub(super) fn read() -> Machine {
    let hklm = LOCAL_MACHINE;
    let raw = RawOs {
        product_name: string(hklm, CURRENT_VERSION, "ProductName"),
        major: dword(hklm, CURRENT_VERSION, "CurrentMajorVersionNumber"),
        minor: dword(hklm, CURRENT_VERSION, "CurrentMinorVersionNumber"),
        current_version: string(hklm, CURRENT_VERSION, "CurrentVersion"),
        build: string(hklm, CURRENT_VERSION, "CurrentBuild")
            .or_else(|| string(hklm, CURRENT_VERSION, "CurrentBuildNumber")),
        ubr: dword(hklm, CURRENT_VERSION, "UBR"),
        locale: string(USERS, &format!(r".DEFAULT\{INTERNATIONAL}"), "LocaleName")
            .or_else(|| string(CURRENT_USER, INTERNATIONAL, "LocaleName")),
        processor_architecture: string(hklm, ENVIRONMENT, "PROCESSOR_ARCHITECTURE"),
    };
    Machine {
        os: os_settings(&raw),
        display_version: string(hklm, CURRENT_VERSION, "DisplayVersion"),
        allow_telemetry: dword(hklm, DATA_COLLECTION, "AllowTelemetry"),
        endpoint: string(hklm, POLICY_KEY, "Endpoint"),
        token: string(hklm, POLICY_KEY, "Token"),
    }
}
