//! Values read only where they have the JSON kind expected, and read as absent otherwise (skipped
//! without error), for the parts of a message that intake looks into by name without their shape being
//! ours to enforce: an audit log's `request` (its shape differs with every method) and the holders of
//! a `policyDelta`, and a `protoPayload`'s `@type` when telling shapes apart.

use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Visitor methods that read a value of any kind not otherwise handled as absent.
macro_rules! absent_otherwise {
    ($absent:expr) => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok($absent)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok($absent)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok($absent)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok($absent)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok($absent)
        }
    };
}

/// Skips the rest of a JSON object.
fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Skips the rest of a JSON array.
fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

/// A string, or `None` for a value of another kind.
#[derive(Default)]
pub(super) struct LooseStr(pub(super) Option<String>);

impl<'de> Deserialize<'de> for LooseStr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor;
        impl<'de> Visitor<'de> for StrVisitor {
            type Value = LooseStr;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E>(self, v: &str) -> Result<LooseStr, E> {
                Ok(LooseStr(Some(v.to_owned())))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<LooseStr, A::Error> {
                drain_map(map).map(|()| LooseStr(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<LooseStr, A::Error> {
                drain_seq(seq).map(|()| LooseStr(None))
            }
            absent_otherwise!(LooseStr(None));
        }
        deserializer.deserialize_any(StrVisitor)
    }
}

/// A JSON object decoded as `T` (whose own fields are decoded as `T` says), or `None` for a value of
/// another kind. (serde would otherwise take a JSON array for a struct, its elements as the fields in
/// order; a lookup by name finds nothing in an array.)
pub(super) struct LooseObj<T>(pub(super) Option<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for LooseObj<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjVisitor<T> {
            type Value = LooseObj<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<LooseObj<T>, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(|t| LooseObj(Some(t)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<LooseObj<T>, A::Error> {
                drain_seq(seq).map(|()| LooseObj(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<LooseObj<T>, E> {
                Ok(LooseObj(None))
            }
            absent_otherwise!(LooseObj(None));
        }
        deserializer.deserialize_any(ObjVisitor(PhantomData))
    }
}

/// The elements of a JSON array, or none for a value of another kind.
pub(super) struct LooseList<T>(pub(super) Vec<T>);

impl<T> Default for LooseList<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for LooseList<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ListVisitor<T> {
            type Value = LooseList<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<LooseList<T>, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(LooseList(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<LooseList<T>, A::Error> {
                drain_map(map).map(|()| LooseList::default())
            }
            fn visit_str<E>(self, _: &str) -> Result<LooseList<T>, E> {
                Ok(LooseList::default())
            }
            absent_otherwise!(LooseList::default());
        }
        deserializer.deserialize_any(ListVisitor(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Named {
        name: LooseStr,
    }

    #[test]
    fn a_value_of_another_kind_reads_as_absent_and_the_rest_is_still_read() {
        let obj = |json: &str| {
            serde_json::from_str::<Vec<LooseObj<Named>>>(json)
                .unwrap()
                .into_iter()
                .map(|o| o.0.and_then(|n| n.name.0))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            obj(r#"[{"name":"a"}, ["b"], "c", 1, true, null, {"name":{"x":[1]}}, {"name":"d"}]"#),
            vec![
                Some("a".into()),
                None,
                None,
                None,
                None,
                None,
                None,
                Some("d".into())
            ]
        );
        let list: LooseList<LooseStr> = serde_json::from_str(r#"["a", 5, "b"]"#).unwrap();
        assert_eq!(
            list.0.into_iter().map(|s| s.0).collect::<Vec<_>>(),
            vec![Some("a".into()), None, Some("b".into())]
        );
        let not_a_list: LooseList<LooseStr> = serde_json::from_str(r#"{"a":["b"]}"#).unwrap();
        assert!(not_a_list.0.is_empty());
    }

    #[test]
    fn a_missing_field_of_an_object_is_still_an_error() {
        assert!(serde_json::from_str::<LooseObj<Named>>("{}").is_err());
    }
}
