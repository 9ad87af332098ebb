//! Windows Error Reporting: `Report.wer` files into `crash/1` reports.
//!
//! A `Report.wer` is UTF-16LE text with a byte-order mark, one `key=value` a
//! line. The crash bucket is in `Sig[n].Name` / `Sig[n].Value` pairs
//! (`Application Name`, `Application Version`, `Fault Module Name`,
//! `Fault Module Version`, `Exception Code`, `Exception Offset`, ...), found
//! by name, not by index (`BEX` puts the offset before the code). `EventType`
//! says what happened: only `APPCRASH`, `BEX` and `BEX64` are crashes; other
//! files are skipped. `ReportIdentifier` (a GUID) becomes the report id, so
//! importing a file twice queues it once. OS facts come from
//! `DynamicSig[n]` (`OS Version`, `Locale ID`) and `OsInfo[n].Key/Value`
//! (`ubr`, `arch`) when present.
//!
//! WER keeps no stack in `Report.wer`: the faulting module at the exception
//! offset is the one frame.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemas::build::BuildVersion;
use schemas::{AppInfo, CrashPayload, Frame, ModuleInfo};
use uuid::Uuid;

/// Why a `Report.wer` could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WerError {
    #[error("not UTF-16 or UTF-8 text: {0}")]
    Encoding(String),
    #[error("no `{0}` line: not a complete Report.wer")]
    Missing(&'static str),
    #[error("`{field}` is {value:?}: {why}")]
    Bad {
        field: &'static str,
        value: String,
        why: &'static str,
    },
}

/// The event types that are crashes.
pub const CRASH_EVENT_TYPES: [&str; 3] = ["APPCRASH", "BEX", "BEX64"];

/// A parsed `Report.wer`: its lines and its signature pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WerFile {
    /// Every `key=value` line (the last one wins for a repeated key).
    pub fields: BTreeMap<String, String>,
    /// `Sig[n].Name` → `Sig[n].Value`.
    pub sig: BTreeMap<String, String>,
    /// `DynamicSig[n].Name` → `DynamicSig[n].Value`.
    pub dynamic_sig: BTreeMap<String, String>,
    /// `OsInfo[n].Key` → `OsInfo[n].Value`.
    pub os_info: BTreeMap<String, String>,
}

/// OS facts a crash report carries; each may be missing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WerOs {
    /// `major.minor.build`.
    pub version: Option<String>,
    pub build: Option<u32>,
    pub revision: Option<u32>,
    pub locale: Option<String>,
    pub arch: Option<String>,
}

/// A crash read from a `Report.wer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WerCrash {
    pub report_id: Uuid,
    pub event_type: String,
    pub payload: CrashPayload,
    pub os: WerOs,
}

/// What a `Report.wer` turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WerReport {
    Crash(Box<WerCrash>),
    /// Another event type (a hang, a kernel event, ...).
    NotACrash {
        event_type: String,
    },
}

/// Decodes a `Report.wer`'s bytes: UTF-16LE (or BE) with a BOM, as WER
/// writes them; UTF-8 (with or without BOM) and BOM-less UTF-16LE too.
pub fn decode(bytes: &[u8]) -> Result<String, WerError> {
    let utf16 = |body: &[u8], le: bool| {
        if !body.len().is_multiple_of(2) {
            return Err(WerError::Encoding(
                "odd number of bytes in UTF-16 text".into(),
            ));
        }
        let units = body.chunks_exact(2).map(|p| {
            if le {
                u16::from_le_bytes([p[0], p[1]])
            } else {
                u16::from_be_bytes([p[0], p[1]])
            }
        });
        char::decode_utf16(units)
            .collect::<Result<String, _>>()
            .map_err(|e| WerError::Encoding(e.to_string()))
    };
    match bytes {
        [0xFF, 0xFE, rest @ ..] => utf16(rest, true),
        [0xFE, 0xFF, rest @ ..] => utf16(rest, false),
        [0xEF, 0xBB, 0xBF, rest @ ..] => {
            String::from_utf8(rest.to_vec()).map_err(|e| WerError::Encoding(e.to_string()))
        }
        [_, 0, ..] => utf16(bytes, true),
        _ => String::from_utf8(bytes.to_vec()).map_err(|e| WerError::Encoding(e.to_string())),
    }
}

/// The name (or key) and the value of one `Sig[n]`-style pair, as found.
type NameValue = (Option<String>, Option<String>);

/// Splits the text into its lines and signature pairs.
pub fn parse_text(text: &str) -> WerFile {
    let mut file = WerFile::default();
    let mut pairs: BTreeMap<(&str, String), NameValue> = BTreeMap::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        for (prefix, name_key, value_key) in [
            ("Sig[", ".Name", ".Value"),
            ("DynamicSig[", ".Name", ".Value"),
            ("OsInfo[", ".Key", ".Value"),
        ] {
            let Some(rest) = key.strip_prefix(prefix) else {
                continue;
            };
            let Some((index, suffix)) = rest.split_once(']') else {
                continue;
            };
            let slot = pairs.entry((prefix, index.to_string())).or_default();
            if suffix == name_key {
                slot.0 = Some(value.to_string());
            } else if suffix == value_key {
                slot.1 = Some(value.to_string());
            }
        }
        file.fields.insert(key.to_string(), value.to_string());
    }
    for ((prefix, _), (name, value)) in pairs {
        let (Some(name), Some(value)) = (name, value) else {
            continue;
        };
        let map = match prefix {
            "Sig[" => &mut file.sig,
            "DynamicSig[" => &mut file.dynamic_sig,
            _ => &mut file.os_info,
        };
        map.insert(name, value);
    }
    file
}

/// `c0000005` → `0xC0000005`: a 32-bit hexadecimal code, spelled the one
/// way ([`schemas::hex::normalise`]).
pub fn normalise_code(raw: &str) -> Result<String, WerError> {
    let digits = schemas::hex::digits(raw.trim());
    u32::from_str_radix(digits, 16)
        .ok()
        .filter(|_| !digits.is_empty() && !digits.starts_with('+'))
        .map(|_| schemas::hex::normalise(raw))
        .ok_or(WerError::Bad {
            field: "Exception Code",
            value: raw.to_string(),
            why: "not a 32-bit hexadecimal code",
        })
}

/// `000000000003fd1e` → `0x3FD1E`: 1 to 16 hex digits, spelled the one way
/// ([`schemas::hex::normalise`]).
pub fn normalise_offset(raw: &str) -> Result<String, WerError> {
    let digits = schemas::hex::digits(raw.trim());
    if digits.is_empty() || digits.len() > 16 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(WerError::Bad {
            field: "Exception Offset",
            value: raw.to_string(),
            why: "not 1 to 16 hexadecimal digits",
        });
    }
    Ok(schemas::hex::normalise(raw))
}

/// Windows locale ids (LCID) seen on the agencies' machines.
fn lcid_locale(lcid: &str) -> Option<&'static str> {
    let id: u32 = match lcid.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
        None => lcid.parse().ok()?,
    };
    Some(match id {
        2052 => "zh-CN",
        1028 => "zh-TW",
        3076 => "zh-HK",
        1033 => "en-US",
        2057 => "en-GB",
        1031 => "de-DE",
        1036 => "fr-FR",
        1041 => "ja-JP",
        1042 => "ko-KR",
        1049 => "ru-RU",
        1025 => "ar-SA",
        1034 | 3082 => "es-ES",
        _ => return None,
    })
}

/// `PROCESSOR_ARCHITECTURE_*` numbers, or names.
fn arch_name(raw: &str) -> Option<&'static str> {
    Some(match raw.to_ascii_lowercase().as_str() {
        "9" | "amd64" | "x64" => "x64",
        "0" | "x86" | "i386" => "x86",
        "12" | "arm64" => "arm64",
        _ => return None,
    })
}

/// Reads one `Report.wer`'s bytes.
pub fn parse(bytes: &[u8]) -> Result<WerReport, WerError> {
    let file = parse_text(&decode(bytes)?);
    let event_type = file
        .fields
        .get("EventType")
        .ok_or(WerError::Missing("EventType"))?
        .clone();
    if !CRASH_EVENT_TYPES.contains(&event_type.to_ascii_uppercase().as_str()) {
        return Ok(WerReport::NotACrash { event_type });
    }
    let raw_id = file
        .fields
        .get("ReportIdentifier")
        .ok_or(WerError::Missing("ReportIdentifier"))?;
    let report_id =
        Uuid::parse_str(raw_id.trim_matches(['{', '}'])).map_err(|_| WerError::Bad {
            field: "ReportIdentifier",
            value: raw_id.clone(),
            why: "not a GUID",
        })?;
    let sig = |name: &'static str| {
        file.sig
            .get(name)
            .filter(|v| !v.is_empty())
            .cloned()
            .ok_or(WerError::Missing(name))
    };
    let app = AppInfo {
        name: sig("Application Name")?,
        version: sig("Application Version")?,
    };
    let module = sig("Fault Module Name")?;
    let exception_code = normalise_code(&sig("Exception Code")?)?;
    let offset = normalise_offset(&sig("Exception Offset")?)?;
    let payload = CrashPayload {
        app,
        exception_code,
        module: ModuleInfo {
            name: module.clone(),
            version: file
                .sig
                .get("Fault Module Version")
                .cloned()
                .unwrap_or_default(),
            offset: offset.clone(),
        },
        frames: vec![Frame {
            module,
            function: None,
            offset,
        }],
    };
    Ok(WerReport::Crash(Box::new(WerCrash {
        report_id,
        event_type,
        payload,
        os: os_facts(&file),
    })))
}

fn os_facts(file: &WerFile) -> WerOs {
    let mut os = WerOs::default();
    // `10.0.19045.2.0.0.256.48`: major.minor.build.sp...; else the three
    // numbers of `OsInfo`. Only a version in the form the edge takes.
    let info = |k: &str| file.os_info.get(k).map(String::as_str);
    let from_signature = file.dynamic_sig.get("OS Version").map(|raw| {
        let parts: Vec<&str> = raw.splitn(4, '.').take(3).collect();
        parts.join(".")
    });
    let from_info = match (info("vermaj"), info("vermin"), info("verbld")) {
        (Some(maj), Some(min), Some(bld)) => Some(format!("{maj}.{min}.{bld}")),
        _ => None,
    };
    if let Some((version, parsed)) = [from_signature, from_info]
        .into_iter()
        .flatten()
        .find_map(|v| BuildVersion::parse_os(&v, 0).map(|parsed| (v, parsed)))
    {
        os.version = Some(version);
        os.build = Some(parsed.build);
    }
    os.revision = info("ubr").and_then(|v| v.parse().ok());
    os.locale = file
        .dynamic_sig
        .get("Locale ID")
        .map(String::as_str)
        .or(info("lcid"))
        .and_then(lcid_locale)
        .map(str::to_string);
    os.arch = info("arch").and_then(arch_name).map(str::to_string);
    os
}

/// Every file named `Report.wer` (any case) under `dir`, sorted.
pub fn find_reports(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() && entry.file_name().eq_ignore_ascii_case("Report.wer") {
                found.push(entry.path());
            }
        }
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn utf16le_with_bom(text: &str) -> Vec<u8> {
        let mut bytes = vec![0xFF, 0xFE];
        bytes.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
        bytes
    }

    fn sample(path: &str) -> Vec<u8> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/wer");
        std::fs::read(dir.join(path)).unwrap()
    }

    #[test]
    fn an_appcrash_file_becomes_a_crash_report() {
        let bytes = sample("AppCrash_explorer.exe_1/Report.wer");
        assert_eq!(
            &bytes[..2],
            &[0xFF, 0xFE],
            "the sample is UTF-16LE with BOM"
        );
        let WerReport::Crash(crash) = parse(&bytes).unwrap() else {
            panic!("APPCRASH is a crash");
        };
        assert_eq!(
            crash.report_id,
            "5d0f7a53-9c1e-4f3b-8a61-2b7e4c9d1a05"
                .parse::<Uuid>()
                .unwrap()
        );
        let p = &crash.payload;
        assert_eq!(p.app.name, "explorer.exe");
        assert_eq!(p.app.version, "10.0.19041.3570");
        assert_eq!(p.exception_code, "0xC0000005");
        assert_eq!(p.module.name, "shell32.dll");
        assert_eq!(p.module.version, "10.0.19041.3570");
        assert_eq!(p.module.offset, "0x3FD1E");
        assert_eq!(p.frames.len(), 1);
        assert_eq!(p.frames[0].module, "shell32.dll");
        assert_eq!(p.frames[0].offset, "0x3FD1E");
        assert_eq!(crash.os.version.as_deref(), Some("10.0.19045"));
        assert_eq!(crash.os.build, Some(19045));
        assert_eq!(crash.os.revision, Some(3570));
        assert_eq!(crash.os.locale.as_deref(), Some("zh-CN"));
        assert_eq!(crash.os.arch.as_deref(), Some("x64"));
    }

    #[test]
    fn bex_puts_the_offset_first_and_is_a_crash_too() {
        let WerReport::Crash(crash) = parse(&sample("BEX64_wps.exe_2/Report.wer")).unwrap() else {
            panic!("BEX64 is a crash");
        };
        assert_eq!(crash.payload.exception_code, "0xC0000409");
        assert_eq!(crash.payload.module.name, "ucrtbase.dll");
        assert_eq!(crash.payload.module.offset, "0x7286E");
        assert_eq!(crash.os.revision, None, "no OsInfo lines");
        assert_eq!(crash.os.locale.as_deref(), Some("en-US"));
    }

    #[test]
    fn other_event_types_are_skipped() {
        let report = parse(&sample("AppHang_notepad.exe_3/Report.wer")).unwrap();
        assert_eq!(
            report,
            WerReport::NotACrash {
                event_type: "AppHangB1".into()
            }
        );
    }

    #[test]
    fn missing_fields_are_named() {
        let text = "Version=1\r\nEventType=APPCRASH\r\n\
                    ReportIdentifier=5d0f7a53-9c1e-4f3b-8a61-2b7e4c9d1a06\r\n\
                    Sig[0].Name=Application Name\r\nSig[0].Value=explorer.exe\r\n";
        let err = parse(&utf16le_with_bom(text)).unwrap_err();
        assert_eq!(err, WerError::Missing("Application Version"));
        assert!(err.to_string().contains("Application Version"));
        let no_id = "Version=1\r\nEventType=APPCRASH\r\n";
        assert_eq!(
            parse(&utf16le_with_bom(no_id)).unwrap_err(),
            WerError::Missing("ReportIdentifier")
        );
        assert_eq!(
            parse(&utf16le_with_bom("Version=1\r\n")).unwrap_err(),
            WerError::Missing("EventType")
        );
        assert!(matches!(
            decode(&[0xFF, 0xFE, 0x41]),
            Err(WerError::Encoding(_))
        ));
    }

    #[test]
    fn codes_and_offsets_are_normalised() {
        assert_eq!(normalise_code("c0000005").unwrap(), "0xC0000005");
        assert_eq!(normalise_code("0x80000003").unwrap(), "0x80000003");
        assert_eq!(normalise_code("e06d7363").unwrap(), "0xE06D7363");
        assert_eq!(normalise_code("5").unwrap(), "0x5");
        assert!(normalise_code("1c0000005").is_err());
        assert!(normalise_code("zz").is_err());
        assert_eq!(normalise_offset("0003fd1e").unwrap(), "0x3FD1E");
        assert_eq!(normalise_code(" 0X0000001d ").unwrap(), "0x1D");
        assert!(normalise_offset("00000000000000000001").is_err());
        assert!(normalise_offset("").is_err());
    }

    #[test]
    fn utf8_and_bomless_utf16_are_read_too() {
        let text = "EventType=APPCRASH\n";
        assert_eq!(decode(text.as_bytes()).unwrap(), text);
        let le: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
        assert_eq!(decode(&le).unwrap(), text);
    }

    #[test]
    fn finds_report_files_recursively() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/wer");
        let found = find_reports(&dir).unwrap();
        assert_eq!(found.len(), 3, "{found:?}");
    }
}
