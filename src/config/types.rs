//! Value types of settings: the ones that accept both the Go server's spellings and ours
//! ([`Dur`], [`StringList`]), and the enumerations a setting chooses from
//! ([`UpdateSubjects`]).
//!
//! They live in `config`, not with the code that acts on them, so that the configuration does
//! not depend on the modules it configures.

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;
use std::time::Duration;

/// A duration written as `"5s"`/`"250ms"` (humantime) or, as the Go config did, an integer
/// number of milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as \"5s\" or integer milliseconds")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dur, E> {
                Ok(Dur(Duration::from_millis(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dur, E> {
                u64::try_from(v)
                    .map(|v| Dur(Duration::from_millis(v)))
                    .map_err(|_| E::custom("a duration cannot be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur, E> {
                if let Ok(ms) = v.trim().parse::<u64>() {
                    return Ok(Dur(Duration::from_millis(ms)));
                }
                humantime::parse_duration(v.trim()).map(Dur).map_err(|e| {
                    E::custom(format!("{v:?} is not a duration ({e}); write e.g. \"5s\""))
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// A list of strings written as an array or as one comma-separated string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StringList(pub Vec<String>);

impl<'de> Deserialize<'de> for StringList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<String>),
        }
        let items = match Raw::deserialize(d)? {
            Raw::One(s) => s.split(',').map(str::to_owned).collect(),
            Raw::Many(v) => v,
        };
        Ok(StringList(
            items
                .into_iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
        ))
    }
}

/// `nats.updatesubjects`: which account update subjects claims-update notifications go to
/// (`old`, `new` or `both`; [`crate::nats::notify`] publishes them, a replica listens there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpdateSubjects {
    /// `$SYS.ACCOUNT.<pub>.CLAIMS.UPDATE`: understood by every nats-server 2.x.
    #[default]
    Old,
    /// `$SYS.REQ.ACCOUNT.<pub>.CLAIMS.UPDATE`: 2.2 and later.
    New,
    /// Both (a server listening on both applies the second as a no-op).
    Both,
}

/// `deserialize_with` for optional paths: an empty string is no path. The Go server treated
/// `operatorjwtpath: ""`, `store { dir: "" }` and the like as unset, and so do we; otherwise
/// an empty path passed `check-config` and failed at start with an error naming no key.
pub(crate) fn optional_path<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<std::path::PathBuf>, D::Error> {
    Ok(Option::<std::path::PathBuf>::deserialize(d)?.filter(|p| !p.as_os_str().is_empty()))
}
