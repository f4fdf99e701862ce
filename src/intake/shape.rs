//! Which shape a message's data has: the one dispatcher of intake.
//!
//! The shape is told by the data's top-level keys (a LogEntry has `protoPayload`, a sweep request
//! `sweep`, a recommendation `recommenderSubtype`, a reference to one `recommendation`, an asset feed
//! message `asset` or `priorAsset`), read in one scan that keeps no value but a `protoPayload`'s
//! `@type`. The shape's own module then decodes the data once, typed, with errors naming the failing
//! field. This module decodes no shape and decides nothing else.

use std::collections::BTreeSet;
use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::loose::{LooseObj, LooseStr};
use super::{IntakeError, decode, sanitize};

/// How many of an unknown object's keys a reason names.
const KEYS_NAMED: usize = 8;

/// The shape of a message's data.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Shape {
    /// A LogEntry with a `protoPayload`, and the payload's `@type` when it is a string.
    LogEntry {
        /// `protoPayload.@type`.
        payload_type: Option<String>,
    },
    /// A sweep request.
    Sweep,
    /// A recommendation body.
    RecommendationBody,
    /// `{"recommendation": NAME or BODY}`.
    RecommendationReference,
    /// A Cloud Asset feed message (a TemporalAsset).
    AssetFeed,
    /// A LogEntry with a text or JSON payload: never an audit log.
    OtherLogEntry,
    /// An object of no shape we know, with its first keys (sorted, cut for a log line).
    Unknown {
        /// Up to [`KEYS_NAMED`] keys.
        keys: Vec<String>,
    },
    /// A JSON string (possibly a recommendation name).
    Text(String),
    /// A JSON array, number, boolean or null: its kind.
    Other(&'static str),
}

impl Shape {
    /// The shape of JSON `data` (whose depth the caller has bounded). Only malformed JSON is an error.
    pub(super) fn of(data: &[u8]) -> Result<Self, IntakeError> {
        let top: TopLevel = decode(data, "message data", "message data")?;
        Ok(match top {
            TopLevel::Object { keys, payload_type } => {
                let has = |key: &str| keys.contains(key);
                if has("protoPayload") {
                    Self::LogEntry { payload_type }
                } else if has("sweep") {
                    Self::Sweep
                } else if has("recommenderSubtype") {
                    Self::RecommendationBody
                } else if has("recommendation") {
                    Self::RecommendationReference
                } else if has("asset") || has("priorAsset") {
                    Self::AssetFeed
                } else if has("logName") && (has("textPayload") || has("jsonPayload")) {
                    Self::OtherLogEntry
                } else {
                    Self::Unknown {
                        keys: keys
                            .iter()
                            .take(KEYS_NAMED)
                            .map(|k| sanitize(k, 40))
                            .collect(),
                    }
                }
            }
            TopLevel::Text(text) => Self::Text(text),
            TopLevel::Other(kind) => Self::Other(kind),
        })
    }
}

/// The top level of JSON data, scanned without keeping any value but the ones named.
enum TopLevel {
    Object {
        keys: BTreeSet<String>,
        payload_type: Option<String>,
    },
    Text(String),
    Other(&'static str),
}

impl<'de> Deserialize<'de> for TopLevel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TopVisitor;
        impl<'de> Visitor<'de> for TopVisitor {
            type Value = TopLevel;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopLevel, A::Error> {
                let mut keys = BTreeSet::new();
                let mut payload_type = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key == "protoPayload" {
                        payload_type = map
                            .next_value::<LooseObj<PayloadType>>()?
                            .0
                            .and_then(|p| p.payload_type?.0);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                    keys.insert(key);
                }
                Ok(TopLevel::Object { keys, payload_type })
            }
            fn visit_str<E>(self, v: &str) -> Result<TopLevel, E> {
                Ok(TopLevel::Text(v.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TopLevel, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(TopLevel::Other("array"))
            }
            fn visit_bool<E>(self, _: bool) -> Result<TopLevel, E> {
                Ok(TopLevel::Other("boolean"))
            }
            fn visit_i64<E>(self, _: i64) -> Result<TopLevel, E> {
                Ok(TopLevel::Other("number"))
            }
            fn visit_u64<E>(self, _: u64) -> Result<TopLevel, E> {
                Ok(TopLevel::Other("number"))
            }
            fn visit_f64<E>(self, _: f64) -> Result<TopLevel, E> {
                Ok(TopLevel::Other("number"))
            }
            fn visit_unit<E>(self) -> Result<TopLevel, E> {
                Ok(TopLevel::Other("null"))
            }
        }
        deserializer.deserialize_any(TopVisitor)
    }
}

/// The part of a `protoPayload` the scan keeps: its `@type`, when it is a string.
#[derive(Deserialize)]
struct PayloadType {
    #[serde(rename = "@type", default)]
    payload_type: Option<LooseStr>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shape_is_told_by_the_top_level_keys_in_a_fixed_order_whatever_their_order_in_the_data() {
        let shape = |data: &str| Shape::of(data.as_bytes()).unwrap();
        assert_eq!(
            shape(r#"{"sweep":{},"protoPayload":{"x":[1],"@type":"t"}}"#),
            Shape::LogEntry {
                payload_type: Some("t".into())
            }
        );
        assert_eq!(
            shape(r#"{"protoPayload":{"@type":5}}"#),
            Shape::LogEntry { payload_type: None }
        );
        assert_eq!(
            shape(r#"{"recommendation":"n","recommenderSubtype":"s"}"#),
            Shape::RecommendationBody
        );
        assert_eq!(
            shape(r#"{"priorAsset":{},"recommendation":1}"#),
            Shape::RecommendationReference
        );
        assert_eq!(shape(r#"{"priorAsset":null}"#), Shape::AssetFeed);
        assert_eq!(
            shape(r#"{"textPayload":"x","logName":"l"}"#),
            Shape::OtherLogEntry
        );
        assert_eq!(
            shape(r#"{"k9":1,"k1":1,"k8":1,"k7":1,"k6":1,"k5":1,"k4":1,"k3":1,"k2":1}"#),
            Shape::Unknown {
                keys: (1..=8).map(|i| format!("k{i}")).collect()
            }
        );
        assert_eq!(shape(r#""a name""#), Shape::Text("a name".into()));
        assert_eq!(shape("[1,{}]"), Shape::Other("array"));
        assert_eq!(shape("null"), Shape::Other("null"));
    }

    #[test]
    fn malformed_data_is_not_json() {
        for data in [r#"{"sweep":"#, r#"{"a":1} x"#, "nope"] {
            assert!(
                matches!(
                    Shape::of(data.as_bytes()),
                    Err(IntakeError::NotJson {
                        what: "message data",
                        ..
                    })
                ),
                "{data}"
            );
        }
    }
}
