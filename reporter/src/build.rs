//! Building reports: payloads from flags or a JSON file, OS facts, the
//! envelope, and the local checks (consent, the same JSON Schemas ingest
//! uses) that keep the machine from queueing what the edge would refuse.

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

use schemas::build::BuildVersion;
use schemas::{Consent, Envelope, OsInfo, SchemaId, json_schema};
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Error;
use crate::config::OsSettings;

/// OS facts used when neither the config nor a flag gives one.
pub const DEFAULT_PRODUCT: &str = "Windows 10 Enterprise G";
pub const DEFAULT_VERSION: &str = "10.0.19045";
pub const DEFAULT_LOCALE: &str = "en-US";

/// The machine's OS facts: `overrides` (flags) first, then `settings`
/// (config), then defaults (Windows 10 Enterprise G 10.0.19045, revision 0,
/// `en-US`, the architecture this binary was built for).
pub fn os_info(settings: &OsSettings, overrides: &OsSettings) -> Result<OsInfo, Error> {
    let pick = |a: &Option<String>, b: &Option<String>, default: &str| {
        a.clone()
            .or_else(|| b.clone())
            .unwrap_or_else(|| default.to_string())
    };
    let version = pick(&overrides.version, &settings.version, DEFAULT_VERSION);
    let build = BuildVersion::parse_os(&version, 0)
        .ok_or_else(|| {
            Error::Invalid(format!(
                "OS version must be Windows' major.minor.build (e.g. 10.0.19045), not {version:?}"
            ))
        })?
        .build;
    let arch = pick(&overrides.arch, &settings.arch, native_arch());
    if !["x64", "x86", "arm64"].contains(&arch.as_str()) {
        return Err(Error::Invalid(format!(
            "arch must be x64, x86 or arm64, not {arch:?}"
        )));
    }
    Ok(OsInfo {
        product: pick(&overrides.product, &settings.product, DEFAULT_PRODUCT),
        version,
        build,
        revision: overrides.revision.or(settings.revision).unwrap_or(0),
        locale: pick(&overrides.locale, &settings.locale, DEFAULT_LOCALE),
        arch,
    })
}

fn native_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86" => "x86",
        "aarch64" => "arm64",
        _ => "x64",
    }
}

/// `feature_request/1` payload.
pub fn feature_request(
    title: &str,
    body: Option<&str>,
    category: &str,
    language: Option<&str>,
) -> Value {
    let mut payload = json!({"title": title, "category": category});
    if let Some(body) = body {
        payload["body"] = json!(body);
    }
    if let Some(language) = language {
        payload["language"] = json!(language);
    }
    payload
}

/// `feedback/1` payload.
pub fn feedback(rating: u8, category: &str, text: Option<&str>) -> Value {
    let mut payload = json!({"rating": rating, "category": category});
    if let Some(text) = text {
        payload["text"] = json!(text);
    }
    payload
}

/// `heartbeat/1` payload; `day` defaults to today (UTC).
pub fn heartbeat(day: Option<&str>, uptime_minutes: Option<u32>) -> Value {
    let day = day.map(str::to_string).unwrap_or_else(|| {
        let today = OffsetDateTime::now_utc().date();
        format!(
            "{:04}-{:02}-{:02}",
            today.year(),
            u8::from(today.month()),
            today.day()
        )
    });
    let mut payload = json!({"day": day});
    if let Some(minutes) = uptime_minutes {
        payload["uptime_minutes"] = json!(minutes);
    }
    payload
}

/// A payload read from a JSON file.
pub fn payload_from_file(path: &Path) -> Result<Value, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Usage(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::Usage(format!("{} is not JSON: {e}", path.display())))
}

/// Refuses a report the machine's consent does not cover.
pub fn check_consent(consent: Consent, schema: SchemaId) -> Result<(), Error> {
    if consent.allows(schema.kind) {
        Ok(())
    } else {
        Err(Error::Consent(format!(
            "a {} report needs consent `{}`, and this machine's consent is `{}`; \
             nothing was queued (set `consent = \"optional\"` in the configuration \
             only if the machine's operator agreed to it)",
            schema.kind,
            schema.kind.min_consent().as_str(),
            consent.as_str()
        )))
    }
}

/// Everything an envelope needs besides the payload.
#[derive(Debug, Clone)]
pub struct Context {
    pub machine_id: String,
    pub consent: Consent,
    pub os: OsInfo,
}

/// Builds and checks an envelope: consent first, then the envelope and
/// payload JSON Schemas ingest validates against. `report_id` defaults to a
/// fresh UUID v4; `sent_at` is `now` (the time the report was made).
pub fn envelope(
    context: &Context,
    schema: SchemaId,
    payload: Value,
    report_id: Option<Uuid>,
    now: OffsetDateTime,
) -> Result<Envelope, Error> {
    check_consent(context.consent, schema)?;
    let envelope = Envelope {
        report_id: report_id.unwrap_or_else(Uuid::new_v4),
        schema: schema.to_string(),
        machine_id: context.machine_id.clone(),
        consent: context.consent,
        sent_at: now,
        os: context.os.clone(),
        payload,
    };
    validate(&envelope)?;
    Ok(envelope)
}

struct Validators {
    envelope: jsonschema::Validator,
    payloads: HashMap<SchemaId, jsonschema::Validator>,
}

fn validators() -> &'static Validators {
    static VALIDATORS: OnceLock<Validators> = OnceLock::new();
    VALIDATORS.get_or_init(|| {
        let compile = |text: &str| {
            let schema: Value = serde_json::from_str(text).expect("embedded schema is JSON");
            jsonschema::validator_for(&schema).expect("embedded schema compiles")
        };
        Validators {
            envelope: compile(json_schema::ENVELOPE),
            payloads: SchemaId::KNOWN
                .into_iter()
                .map(|id| (id, compile(json_schema::payload(id))))
                .collect(),
        }
    })
}

/// Checks an envelope against the JSON Schemas; the error names the field.
pub fn validate(envelope: &Envelope) -> Result<(), Error> {
    let schema: SchemaId = envelope
        .schema
        .parse()
        .map_err(|_| Error::Invalid(format!("unknown schema {:?}", envelope.schema)))?;
    let value = serde_json::to_value(envelope).expect("an envelope encodes");
    let v = validators();
    for (validator, instance, prefix) in [
        (&v.envelope, &value, ""),
        (&v.payloads[&schema], &value["payload"], "payload"),
    ] {
        if let Some(error) = validator.iter_errors(instance).next() {
            let path = error.instance_path.as_str();
            let field = format!("{prefix}{}", path.replace('/', "."));
            let field = field.trim_start_matches('.');
            return Err(Error::Invalid(format!(
                "{}: {error}",
                if field.is_empty() { "report" } else { field }
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn context(consent: Consent) -> Context {
        Context {
            machine_id: "m-0123456789abcdef".into(),
            consent,
            os: os_info(&OsSettings::default(), &OsSettings::default()).unwrap(),
        }
    }

    pub(crate) fn sample_envelope() -> Envelope {
        envelope(
            &context(Consent::Required),
            SchemaId::HEARTBEAT_V1,
            heartbeat(Some("2026-11-20"), Some(540)),
            None,
            OffsetDateTime::now_utc(),
        )
        .unwrap()
    }

    #[test]
    fn envelopes_carry_fresh_ids_and_the_context() {
        let a = sample_envelope();
        let b = sample_envelope();
        assert_ne!(a.report_id, b.report_id);
        assert_eq!(a.report_id.get_version_num(), 4);
        assert_eq!(a.schema, "heartbeat/1");
        assert_eq!(a.machine_id, "m-0123456789abcdef");
        assert_eq!(a.os.build, 19045);
        assert_eq!(a.payload["day"], "2026-11-20");
        // The envelope is exactly what the contract's fixtures look like.
        let value = serde_json::to_value(&a).unwrap();
        let fixture: Value = serde_json::from_str(schemas::fixtures::HEARTBEAT).unwrap();
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&value), keys(&fixture));
    }

    #[test]
    fn consent_required_refuses_free_text_reports() {
        let ctx = context(Consent::Required);
        let now = OffsetDateTime::now_utc();
        let payload = feature_request("Group windows", None, "shell.taskbar", None);
        let err = envelope(
            &ctx,
            SchemaId::FEATURE_REQUEST_V1,
            payload.clone(),
            None,
            now,
        )
        .unwrap_err();
        assert!(matches!(err, Error::Consent(_)));
        assert!(
            err.to_string().contains("needs consent `optional`"),
            "{err}"
        );
        let fb = envelope(
            &ctx,
            SchemaId::FEEDBACK_V1,
            feedback(4, "update", None),
            None,
            now,
        );
        assert!(matches!(fb, Err(Error::Consent(_))));
        let ok = context(Consent::Optional);
        envelope(&ok, SchemaId::FEATURE_REQUEST_V1, payload, None, now).unwrap();
        envelope(
            &ctx,
            SchemaId::HEARTBEAT_V1,
            heartbeat(None, None),
            None,
            now,
        )
        .unwrap();
    }

    #[test]
    fn payloads_are_checked_against_the_schemas() {
        let ctx = context(Consent::Optional);
        let now = OffsetDateTime::now_utc();
        let err = envelope(
            &ctx,
            SchemaId::FEEDBACK_V1,
            feedback(9, "update", None),
            None,
            now,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("payload.rating"), "{err}");
        let err = envelope(
            &ctx,
            SchemaId::FEEDBACK_V1,
            feedback(3, "Bad Category", None),
            None,
            now,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("payload.category"), "{err}");
        let crash: Value = serde_json::from_str(schemas::fixtures::CRASH).unwrap();
        envelope(
            &ctx,
            SchemaId::CRASH_V1,
            crash["payload"].clone(),
            None,
            now,
        )
        .unwrap();
    }

    #[test]
    fn os_facts_come_from_flags_then_config_then_defaults() {
        let config = OsSettings {
            version: Some("10.0.22631".into()),
            locale: Some("zh-CN".into()),
            ..Default::default()
        };
        let flags = OsSettings {
            locale: Some("en-GB".into()),
            revision: Some(3570),
            ..Default::default()
        };
        let os = os_info(&config, &flags).unwrap();
        assert_eq!((os.build, os.revision), (22631, 3570));
        assert_eq!(os.locale, "en-GB");
        assert_eq!(os.product, DEFAULT_PRODUCT);
        let bad = OsSettings {
            version: Some("10".into()),
            ..Default::default()
        };
        assert!(os_info(&bad, &OsSettings::default()).is_err());
    }
}
