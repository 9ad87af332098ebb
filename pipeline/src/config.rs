//! The one way both services read their TOML configuration, and secrets
//! that need not sit in it.
//!
//! In: a file path (or TOML text) and the service's `Deserialize` type. Out:
//! that type, or a [`ConfigError`] saying which file, which line or which
//! rule. Each service then checks what its types cannot express.
//!
//! A secret (`machine_id_key`, a ClickHouse password, Kafka's
//! `sasl.password`) is written in one of three forms:
//!
//! ```toml
//! password = "in the file itself"
//! password = { env = "CLICKHOUSE_PASSWORD" }        # an environment variable
//! password = { file = "/run/secrets/clickhouse" }   # a file's contents
//! ```
//!
//! A file's contents lose one trailing newline (`\n` or `\r\n`), as secret
//! files written by `echo` or by orchestrators carry one. A variable that is
//! not set, or a file that cannot be read, is a configuration error shown at
//! the key's line. Fields take these forms through
//! `#[serde(deserialize_with = "pipeline::config::secret")]` (one value) or
//! [`secret_values`] (every value of a map, e.g. Kafka properties).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("parsing configuration: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Parses TOML text into `T`, secrets resolved.
pub fn from_toml<T: DeserializeOwned>(text: &str) -> Result<T, ConfigError> {
    Ok(toml::from_str(text)?)
}

/// Reads the file at `path` and parses it into `T`, secrets resolved.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    from_toml(&text)
}

/// Where a secret's value comes from, as written in the file.
#[derive(Deserialize)]
#[serde(untagged)]
enum SecretSource {
    Inline(String),
    Reference(Reference),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
enum Reference {
    Env(String),
    File(PathBuf),
}

impl Reference {
    fn resolve(self) -> Result<String, String> {
        match self {
            Reference::Env(name) => std::env::var(&name).map_err(|error| match error {
                std::env::VarError::NotPresent => {
                    format!("environment variable {name} is not set")
                }
                std::env::VarError::NotUnicode(_) => {
                    format!("environment variable {name} is not valid UTF-8")
                }
            }),
            Reference::File(path) => match std::fs::read_to_string(&path) {
                Ok(text) => Ok(trim_newline(text)),
                Err(error) => Err(format!("reading secret file {}: {error}", path.display())),
            },
        }
    }
}

impl SecretSource {
    fn resolve(self) -> Result<String, String> {
        match self {
            SecretSource::Inline(value) => Ok(value),
            SecretSource::Reference(reference) => reference.resolve(),
        }
    }
}

fn trim_newline(mut text: String) -> String {
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    text
}

/// Deserializes a secret: a string, `{ env = "NAME" }` or
/// `{ file = "/path" }`, resolved to its value.
pub fn secret<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    SecretSource::deserialize(deserializer)
        .map_err(|_| {
            serde::de::Error::custom(
                "expected a string, { env = \"NAME\" } or { file = \"/path\" }",
            )
        })?
        .resolve()
        .map_err(serde::de::Error::custom)
}

/// Deserializes a map whose every value may be a secret (see [`secret`]),
/// such as librdkafka properties with `sasl.password`.
pub fn secret_values<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    BTreeMap::<String, SecretSource>::deserialize(deserializer)?
        .into_iter()
        .map(|(key, source)| match source.resolve() {
            Ok(value) => Ok((key, value)),
            Err(reason) => Err(serde::de::Error::custom(format!("{key}: {reason}"))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        #[serde(deserialize_with = "secret")]
        key: String,
        #[serde(default, deserialize_with = "secret_values")]
        properties: BTreeMap<String, String>,
    }

    fn parse(text: &str) -> Result<Sample, ConfigError> {
        from_toml(text)
    }

    #[test]
    fn a_secret_may_be_written_inline() {
        assert_eq!(parse("key = \"s3cret\"\n").expect("valid").key, "s3cret");
    }

    #[test]
    fn a_secret_may_come_from_an_environment_variable() {
        // A variable every test process has (setting one needs `unsafe`).
        let expected = std::env::var("PATH").expect("PATH is set");
        let sample = parse("key = { env = \"PATH\" }\n").expect("valid");
        assert_eq!(sample.key, expected);
    }

    #[test]
    fn a_secret_file_loses_one_trailing_newline() {
        let path = temp_file("trailing");
        for (written, read) in [
            ("abc\n", "abc"),
            ("abc\r\n", "abc"),
            ("abc", "abc"),
            ("abc\n\n", "abc\n"),
            (" abc ", " abc "),
        ] {
            std::fs::write(&path, written).expect("write");
            let text = format!("key = {{ file = {:?} }}\n", path.display().to_string());
            assert_eq!(parse(&text).expect("valid").key, read, "{written:?}");
        }
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn a_missing_variable_is_an_error_at_its_key() {
        let error =
            parse("\nkey = { env = \"PIPELINE_CONFIG_TEST_NEVER_SET\" }\n").expect_err("unset");
        let text = error.to_string();
        assert!(matches!(error, ConfigError::Parse(_)));
        assert!(
            text.contains("PIPELINE_CONFIG_TEST_NEVER_SET is not set"),
            "{text}"
        );
        assert!(text.contains("line 2"), "{text}");
        assert!(text.contains("key = "), "{text}");
    }

    #[test]
    fn a_missing_file_is_an_error_at_its_key() {
        let text = parse("key = { file = \"/nonexistent/secret\" }\n")
            .expect_err("missing")
            .to_string();
        assert!(
            text.contains("reading secret file /nonexistent/secret"),
            "{text}"
        );
        assert!(text.contains("key = "), "{text}");
    }

    #[test]
    fn other_forms_are_refused() {
        for text in [
            "key = { environment = \"X\" }\n",
            "key = { env = \"X\", file = \"/y\" }\n",
            "key = 3\n",
        ] {
            let error = parse(text).expect_err(text).to_string();
            assert!(error.contains("expected a string, { env"), "{error}");
        }
    }

    #[test]
    fn map_values_resolve_and_name_their_key() {
        let path = temp_file("sasl");
        std::fs::write(&path, "hunter2\n").expect("write");
        let sample = parse(&format!(
            "key = \"k\"\n[properties]\n\"security.protocol\" = \"SASL_SSL\"\n\
             \"sasl.password\" = {{ file = {:?} }}\n",
            path.display().to_string()
        ))
        .expect("valid");
        assert_eq!(sample.properties["sasl.password"], "hunter2");
        assert_eq!(sample.properties["security.protocol"], "SASL_SSL");
        let _ = std::fs::remove_file(path);
        let error = parse(
            "key = \"k\"\n[properties]\n\"sasl.password\" = { env = \"PIPELINE_CONFIG_TEST_NEVER_SET\" }\n",
        )
        .expect_err("unset")
        .to_string();
        assert!(
            error.contains("sasl.password: environment variable PIPELINE_CONFIG_TEST_NEVER_SET"),
            "{error}"
        );
    }

    #[test]
    fn load_names_the_file_it_cannot_read() {
        let error = load::<Sample>(Path::new("/nonexistent/config.toml")).expect_err("missing");
        assert_eq!(error.to_string(), "reading /nonexistent/config.toml");
    }

    /// A path of this test process's own in the temporary folder.
    fn temp_file(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("pipeline-config-{}-{name}", std::process::id()))
    }
}
