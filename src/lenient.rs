//! Lenient JSON field types: console records are read straight from the
//! response bytes, and a field of an unexpected type reads as empty instead
//! of failing the whole answer.
//!
//! Consoles and proxies disagree on types (ids as numbers or strings,
//! booleans as `"true"`), and one odd field must not hide every agent of a
//! page. Reading through these types instead of a `serde_json::Value` tree
//! also skips every field the connector does not use without allocating for
//! it: an agent record carries about a hundred.

use alloc::{
    borrow::ToOwned,
    string::{String, ToString},
    vec::Vec,
};

use core::fmt;
use core::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// How a lenient type is built from each JSON shape. Every shape a type
/// does not accept reads as its default; `null` always does.
trait Lenient<'de>: Default {
    fn from_text(_: &str) -> Self {
        Self::default()
    }

    fn from_u64(_: u64) -> Self {
        Self::default()
    }

    fn from_i64(_: i64) -> Self {
        Self::default()
    }

    fn from_f64(_: f64) -> Self {
        Self::default()
    }

    fn from_bool(_: bool) -> Self {
        Self::default()
    }

    fn from_seq<A: SeqAccess<'de>>(seq: A) -> Result<Self, A::Error> {
        IgnoredAny.visit_seq(seq).map(|_| Self::default())
    }

    fn from_map<A: MapAccess<'de>>(map: A) -> Result<Self, A::Error> {
        IgnoredAny.visit_map(map).map(|_| Self::default())
    }
}

/// The one visitor: routes each JSON shape to the [`Lenient`] constructor.
struct Reader<T>(PhantomData<T>);

impl<'de, T: Lenient<'de>> Visitor<'de> for Reader<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E>(self, v: &str) -> Result<T, E> {
        Ok(T::from_text(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<T, E> {
        Ok(T::from_u64(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<T, E> {
        Ok(T::from_i64(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<T, E> {
        Ok(T::from_f64(v))
    }

    fn visit_bool<E>(self, v: bool) -> Result<T, E> {
        Ok(T::from_bool(v))
    }

    fn visit_unit<E>(self) -> Result<T, E> {
        Ok(T::default())
    }

    fn visit_none<E>(self) -> Result<T, E> {
        Ok(T::default())
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<T, A::Error> {
        T::from_seq(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::from_map(map)
    }
}

fn read<'de, T: Lenient<'de>, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
    d.deserialize_any(Reader(PhantomData))
}

/// A string or a number, as text (numbers in decimal, as the console
/// prints them); empty for anything else.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Text(pub String);

impl Lenient<'_> for Text {
    fn from_text(v: &str) -> Self {
        Text(v.to_owned())
    }

    fn from_u64(v: u64) -> Self {
        Text(v.to_string())
    }

    fn from_i64(v: i64) -> Self {
        Text(v.to_string())
    }

    fn from_f64(v: f64) -> Self {
        Text(serde_json::Number::from_f64(v).map_or_else(String::new, |n| n.to_string()))
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        read(d)
    }
}

/// A string; empty for anything else, numbers included.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Str(pub String);

impl Lenient<'_> for Str {
    fn from_text(v: &str) -> Self {
        Str(v.to_owned())
    }
}

impl<'de> Deserialize<'de> for Str {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        read(d)
    }
}

/// `true`, or a string that says `true` in any case; false for anything
/// else.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flag(pub bool);

impl Lenient<'_> for Flag {
    fn from_bool(v: bool) -> Self {
        Flag(v)
    }

    fn from_text(v: &str) -> Self {
        Flag(v.eq_ignore_ascii_case("true"))
    }
}

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        read(d)
    }
}

/// An array, each item read as `T`; empty for anything else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct List<T>(pub Vec<T>);

impl<T> Default for List<T> {
    fn default() -> Self {
        List(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Lenient<'de> for List<T> {
    fn from_seq<A: SeqAccess<'de>>(mut seq: A) -> Result<Self, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(List(items))
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for List<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        read(d)
    }
}

/// An object read as `T`, whose fields should all be lenient types (and
/// `#[serde(default)]`); `T::default()` for anything that is not an object.
///
/// `T`'s own rules still apply inside the object: a field named twice is an
/// error, because a record that says two things about itself cannot be
/// trusted to name the right machine.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Object<T>(pub T);

impl<'de, T: Deserialize<'de> + Default> Lenient<'de> for Object<T> {
    fn from_map<A: MapAccess<'de>>(map: A) -> Result<Self, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map)).map(Object)
    }
}

impl<'de, T: Deserialize<'de> + Default> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        read(d)
    }
}

/// Reads an object as `T`, and fails on any other shape: for the outer
/// body of an answer, where `T`'s derived impl would also take an array and
/// the lenient [`Object`] would turn junk into an empty record.
pub fn object_only<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
    d.deserialize_map(ObjectOnly(PhantomData))
}

struct ObjectOnly<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectOnly<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    struct Record {
        id: Text,
        name: Str,
        on: Flag,
        tags: List<Str>,
        inner: Object<Inner>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    struct Inner {
        x: Text,
    }

    fn parse(json: &str) -> Record {
        serde_json::from_str::<Object<Record>>(json).unwrap().0
    }

    #[test]
    fn every_shape_reads_without_failing() {
        let r = parse(
            r#"{"id": 657613730168123595, "name": "PC", "on": "TRUE", "tags": ["a", 1, null, "b"],
                "inner": {"x": -5, "y": [1, {"z": 2}]}, "unused": {"deep": [[[]]]}}"#,
        );
        assert_eq!(r.id.0, "657613730168123595");
        assert_eq!(r.name.0, "PC");
        assert!(r.on.0);
        let tags: Vec<&str> = r.tags.0.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(tags, ["a", "", "", "b"]);
        assert_eq!(r.inner.0.x.0, "-5");

        let odd = parse(r#"{"id": [1], "name": 5, "on": 1, "tags": "a", "inner": "x"}"#);
        assert_eq!(odd.id.0, "");
        assert_eq!(odd.name.0, "");
        assert!(!odd.on.0);
        assert!(odd.tags.0.is_empty());
        assert_eq!(odd.inner.0.x.0, "");

        let nulls = parse(r#"{"id": null, "name": null, "on": null, "tags": null}"#);
        assert_eq!(nulls.id.0, "");
        assert!(nulls.tags.0.is_empty());
        assert_eq!(parse(r#"{"id": 1.5}"#).id.0, "1.5");
        assert_eq!(parse(r#"{"id": "esc\"aped"}"#).id.0, "esc\"aped");
    }

    #[test]
    fn non_objects_read_as_default_and_broken_json_still_fails() {
        for json in ["[]", "\"x\"", "5", "null", "true"] {
            assert_eq!(
                serde_json::from_str::<Object<Record>>(json).unwrap().0.id.0,
                ""
            );
        }
        assert!(serde_json::from_str::<Object<Record>>(r#"{"id": "1""#).is_err());
        assert!(serde_json::from_str::<Object<Record>>(r#"{"id": "1", "id": "2"}"#).is_err());
    }
}
