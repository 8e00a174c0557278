//! The `NAS_` environment layer: `NAS_HTTP__PORT=9091` → `http.port = 9091`.
//!
//! Only variables that name a setting are read. Others with the prefix are reported (one
//! warning at start) and ignored: Kubernetes gives every pod `NAS_SERVICE_HOST`,
//! `NAS_PORT_9090_TCP_ADDR` and the like for a Service named `nas`, and a server that refused
//! to start over them could not run there. A config *file* with an unknown key still fails: a
//! file is written for this server, the environment is shared with everything else.
//!
//! Which paths are settings is read from the settings types themselves ([`names_setting`]),
//! so a setting added later is known here without a list to keep in step.

use super::ConfigError;
use serde::de::value::StrDeserializer;
use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, Visitor};
use serde::Deserializer;
use serde_json::Value;
use std::cell::Cell;
use std::fmt;

/// The prefix of our variables.
const PREFIX: &str = "NAS_";

/// Separates a section from its key: `NAS_HTTP__PORT`.
const SEPARATOR: &str = "__";

/// The environment layer: values typed the way a config file would type them (numbers,
/// booleans; lists are comma-separated strings), and the `NAS_` variables that were ignored
/// because they name no setting of `T` (nor one of `accepted`, keys taken without a field).
///
/// # Errors
/// [`ConfigError::Parse`] when the variables cannot be read.
pub(super) fn layer<T: DeserializeOwned>(
    env: impl IntoIterator<Item = (String, String)>,
    accepted: &[&str],
) -> Result<(Value, Vec<String>), ConfigError> {
    let mut ignored = Vec::new();
    let mut vars = std::collections::HashMap::new();
    for (name, value) in env {
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let path: Vec<String> = rest.split(SEPARATOR).map(str::to_ascii_lowercase).collect();
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        if accepted.contains(&path.join(".").as_str()) || names_setting::<T>(&path) {
            vars.insert(name, value);
        } else {
            ignored.push(name);
        }
    }
    ignored.sort();
    let source = config::Environment::with_prefix("NAS")
        .prefix_separator("_")
        .separator(SEPARATOR)
        .try_parsing(true)
        .source(Some(vars));
    let value = config::Config::builder()
        .add_source(source)
        .build()
        .and_then(|cfg| cfg.try_deserialize::<Value>())
        .map_err(|e| ConfigError::Parse(format!("environment: {e}")))?;
    Ok((value, ignored))
}

/// True when `path` (lowercase keys) names a field of `T` or of a section inside it, at any
/// depth. Found by letting `T`'s `Deserialize` impl ask a probe for its fields: serde passes
/// a struct's field names (aliases included) to `deserialize_struct`.
pub(super) fn names_setting<T: DeserializeOwned>(path: &[&str]) -> bool {
    let found = Cell::new(false);
    // The probe always ends in an error (it has no values to give); what it learned is in
    // `found`.
    let _ = T::deserialize(Probe {
        path,
        found: &found,
    });
    found.get()
}

/// A deserializer that walks `path` through nested structs and records whether its last key is
/// a field.
struct Probe<'a> {
    path: &'a [&'a str],
    found: &'a Cell<bool>,
}

/// Ends a probe.
#[derive(Debug)]
struct Stop;

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("probe done")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<M: fmt::Display>(_: M) -> Self {
        Stop
    }
}

impl<'de> Deserializer<'de> for Probe<'_> {
    type Error = Stop;

    /// Not a section: nothing below it is a setting.
    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        let Some((key, rest)) = self.path.split_first() else {
            return Err(Stop);
        };
        if !fields.contains(key) {
            return Err(Stop);
        }
        if rest.is_empty() {
            self.found.set(true);
            return Err(Stop);
        }
        visitor.visit_map(Entry {
            key: Some(key),
            value: Probe {
                path: rest,
                found: self.found,
            },
        })
    }

    /// Optional sections (`http.tls`, `cluster.nats`) are sections all the same.
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Stop> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

/// The one entry a probe hands a struct: the next key of the path, with the rest of the
/// path as its value.
struct Entry<'a> {
    key: Option<&'a str>,
    value: Probe<'a>,
}

impl<'de, 'a> MapAccess<'de> for Entry<'a> {
    type Error = Stop;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Stop> {
        match self.key.take() {
            Some(key) => seed
                .deserialize(StrDeserializer::<Stop>::new(key))
                .map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Stop> {
        seed.deserialize(Probe {
            path: self.value.path,
            found: self.value.found,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::names_setting;
    use crate::config::Settings;

    /// What the probe of the settings types knows, directly.
    #[test]
    fn the_settings_types_name_their_keys() {
        for path in [
            "operatorjwtpath",
            "http.port",
            "http.tls.ca",
            "nats.tls.root",
            "nats.tls.ca",
            "cluster.nats.tls.cert",
            "store.tombstonettl",
            "http",
        ] {
            let path: Vec<&str> = path.split('.').collect();
            assert!(names_setting::<Settings>(&path), "{path:?}");
        }
        for path in [
            "port",
            "http.prot",
            "http.port.x",
            "http.tls.root",
            "primary.x",
            "",
        ] {
            let path: Vec<&str> = path.split('.').collect();
            assert!(!names_setting::<Settings>(&path), "{path:?}");
        }
    }
}
