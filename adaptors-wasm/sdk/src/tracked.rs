//! Decoding a parsed `serde_json::Value` into a type while keeping the path of the
//! value being decoded, so that an error names its field (`nested.list[1]`).
//!
//! serde_path_to_error does the same by wrapping the deserializer and every visitor,
//! which compiles each spec and state type twice (once for the wrappers); decoding
//! from the byte slice inlines the JSON parser into every type's visitor as well. Here
//! the only deserializer is a `Value` node that knows its path: the types' visitors are
//! compiled once, against it, and do no parsing. Structs take JSON objects only (serde
//! would also accept an array of the field values), so the visitors' array halves are
//! never compiled either.

use std::cell::RefCell;
use std::fmt;

use serde::de::value::BorrowedStrDeserializer;
use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, Expected, MapAccess, SeqAccess, Unexpected,
    VariantAccess, Visitor,
};
use serde_json::Value;

/// Why decoding failed: serde's message. Not `serde_json::Error`, whose constructor
/// parses every message for a position that these errors never have.
#[derive(Debug)]
pub(crate) struct Error(pub(crate) String);

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }

    fn invalid_type(unexpected: Unexpected<'_>, expected: &dyn Expected) -> Self {
        Error(format!(
            "invalid type: {}, expected {expected}",
            Shown(unexpected)
        ))
    }

    fn invalid_value(unexpected: Unexpected<'_>, expected: &dyn Expected) -> Self {
        Error(format!(
            "invalid value: {}, expected {expected}",
            Shown(unexpected)
        ))
    }
}

/// serde's `Unexpected` in serde_json's words. serde's own `Display` writes floats
/// with `core::fmt`, whose float formatting is some 12 KB of code in a component;
/// serde_json's `Number` writes them with the formatter it already links.
struct Shown<'a>(Unexpected<'a>);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Unexpected::Bool(b) => write!(f, "boolean `{b}`"),
            Unexpected::Unsigned(u) => write!(f, "integer `{u}`"),
            Unexpected::Signed(i) => write!(f, "integer `{i}`"),
            Unexpected::Float(x) => match serde_json::Number::from_f64(x) {
                Some(n) => write!(f, "floating point `{n}`"),
                None => f.write_str("floating point"),
            },
            Unexpected::Char(c) => write!(f, "character `{c}`"),
            Unexpected::Str(s) => write!(f, "string {s:?}"),
            Unexpected::Bytes(_) => f.write_str("byte array"),
            Unexpected::Unit => f.write_str("null"),
            Unexpected::Option => f.write_str("Option value"),
            Unexpected::NewtypeStruct => f.write_str("newtype struct"),
            Unexpected::Seq => f.write_str("sequence"),
            Unexpected::Map => f.write_str("map"),
            Unexpected::Enum => f.write_str("enum"),
            Unexpected::UnitVariant => f.write_str("unit variant"),
            Unexpected::NewtypeVariant => f.write_str("newtype variant"),
            Unexpected::TupleVariant => f.write_str("tuple variant"),
            Unexpected::StructVariant => f.write_str("struct variant"),
            Unexpected::Other(other) => f.write_str(other),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// Decodes `value` as `T`; on error, also the path of the value that failed (`.` for
/// `value` itself), written as serde_path_to_error writes it.
pub(crate) fn decode<'de, T: de::Deserialize<'de>>(
    value: &'de Value,
) -> Result<T, (String, Error)> {
    let track = Track::default();
    let root = Node {
        value,
        chain: &Chain::Root,
        track: &track,
    };
    T::deserialize(root).map_err(|err| {
        let path = track.0.into_inner().unwrap_or_else(|| ".".to_owned());
        (path, err)
    })
}

/// Where a value sits: its parent and its key or index, as a list on the stack.
enum Chain<'c> {
    Root,
    Key(&'c Chain<'c>, &'c str),
    Index(&'c Chain<'c>, usize),
}

impl Chain<'_> {
    /// `a.b[2].c`; `.` for the root.
    fn render(&self) -> String {
        let mut segments = Vec::new();
        let mut chain = self;
        loop {
            match chain {
                Chain::Root => break,
                Chain::Key(parent, key) => {
                    segments.push(Ok(*key));
                    chain = parent;
                }
                Chain::Index(parent, index) => {
                    segments.push(Err(*index));
                    chain = parent;
                }
            }
        }
        if segments.is_empty() {
            return ".".to_owned();
        }
        let mut path = String::new();
        for segment in segments.iter().rev() {
            match segment {
                Ok(key) => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key);
                }
                Err(index) => {
                    path.push('[');
                    crate::text::push_decimal(&mut path, *index as u64);
                    path.push(']');
                }
            }
        }
        path
    }
}

/// The path of the innermost value that failed; set once, by the first (deepest)
/// failure on the way out.
#[derive(Default)]
struct Track(RefCell<Option<String>>);

impl Track {
    fn note<T>(&self, chain: &Chain<'_>, result: Result<T, Error>) -> Result<T, Error> {
        if result.is_err() {
            let mut path = self.0.borrow_mut();
            if path.is_none() {
                *path = Some(chain.render());
            }
        }
        result
    }
}

/// One value of the document being decoded, with its path.
#[derive(Clone, Copy)]
struct Node<'de, 'c> {
    value: &'de Value,
    chain: &'c Chain<'c>,
    track: &'c Track,
}

impl<'de, 'c> Node<'de, 'c> {
    fn invalid_type(&self, expected: &dyn Expected) -> Error {
        de::Error::invalid_type(unexpected(self.value), expected)
    }

    fn visit_object<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let Value::Object(map) = self.value else {
            return Err(self.invalid_type(&visitor));
        };
        // Unlike arrays (a tuple stops reading at its length), every map and struct
        // visitor reads to the end, so the access is handed over rather than lent.
        visitor.visit_map(Members {
            entries: map.iter(),
            pending: None,
            chain: self.chain,
            track: self.track,
        })
    }

    fn visit_array<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let Value::Array(items) = self.value else {
            return Err(self.invalid_type(&visitor));
        };
        let mut access = Elements {
            items: items.iter(),
            index: 0,
            chain: self.chain,
            track: self.track,
        };
        let value = visitor.visit_seq(&mut access)?;
        match access.items.len() {
            0 => Ok(value),
            left => Err(de::Error::invalid_length(
                items.len() - left,
                &"fewer elements in array",
            )),
        }
    }
}

/// What serde says a value was, as serde_json's own `Value` deserializer says it.
fn unexpected(value: &Value) -> Unexpected<'_> {
    match value {
        Value::Null => Unexpected::Unit,
        Value::Bool(b) => Unexpected::Bool(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Unexpected::Unsigned(u),
            (None, Some(i), _) => Unexpected::Signed(i),
            (None, None, Some(f)) => Unexpected::Float(f),
            (None, None, None) => Unexpected::Other("number"),
        },
        Value::String(s) => Unexpected::Str(s),
        Value::Array(_) => Unexpected::Seq,
        Value::Object(_) => Unexpected::Map,
    }
}

/// Scalar types go straight to [`visit_scalar`], so that their visitors are not also
/// compiled for objects and arrays, as they would be through `deserialize_any`.
macro_rules! scalars {
    ($($method:ident)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
                visit_scalar(self.value, visitor)
            }
        )*
    };
}

/// Hands a scalar to the visitor as what it is; the visitor refuses what it cannot
/// take (`expected u8`), as it would from serde_json's own `Value` deserializer.
fn visit_scalar<'de, V: Visitor<'de>>(value: &'de Value, visitor: V) -> Result<V::Value, Error> {
    match value {
        Value::Null => visitor.visit_unit(),
        Value::Bool(b) => visitor.visit_bool(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => visitor.visit_u64(u),
            (None, Some(i), _) => visitor.visit_i64(i),
            (None, None, Some(f)) => visitor.visit_f64(f),
            (None, None, None) => Err(de::Error::invalid_type(unexpected(value), &visitor)),
        },
        Value::String(s) => visitor.visit_borrowed_str(s),
        Value::Array(_) | Value::Object(_) => {
            Err(de::Error::invalid_type(unexpected(value), &visitor))
        }
    }
}

impl<'de> Deserializer<'de> for Node<'de, '_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Value::Object(_) => self.visit_object(visitor),
            Value::Array(_) => self.visit_array(visitor),
            scalar => visit_scalar(scalar, visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.visit_array(visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.visit_array(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.visit_array(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.visit_object(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.visit_object(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.value {
            // `{"variant": value}`: the value's path goes through the variant's name.
            Value::Object(map) => {
                let mut entries = map.iter();
                match (entries.next(), entries.next()) {
                    (Some((variant, value)), None) => visitor.visit_enum(Variant {
                        name: variant,
                        value,
                        chain: self.chain,
                        track: self.track,
                    }),
                    _ => Err(de::Error::invalid_value(
                        Unexpected::Map,
                        &"map with a single key",
                    )),
                }
            }
            // A unit variant by name.
            Value::String(variant) => {
                visitor.visit_enum(BorrowedStrDeserializer::<Error>::new(variant))
            }
            // Specs name a variant; the map form is serde's, for variants with data.
            other => Err(de::Error::invalid_type(unexpected(other), &"a string")),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    scalars! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char deserialize_str
        deserialize_string deserialize_bytes deserialize_byte_buf deserialize_unit
        deserialize_identifier
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visit_scalar(self.value, visitor)
    }
}

/// The members of an object, each value decoded with its key on the path.
struct Members<'de, 'c> {
    entries: serde_json::map::Iter<'de>,
    pending: Option<(&'de str, &'de Value)>,
    chain: &'c Chain<'c>,
    track: &'c Track,
}

impl<'de> MapAccess<'de> for Members<'de, '_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.pending = Some((key, value));
        // An unknown field is named by its key.
        let chain = Chain::Key(self.chain, key);
        let result = seed.deserialize(Key(key));
        self.track.note(&chain, result).map(Some)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, Error> {
        let Some((key, value)) = self.pending.take() else {
            return Err(de::Error::custom("value is missing"));
        };
        let chain = Chain::Key(self.chain, key);
        let node = Node {
            value,
            chain: &chain,
            track: self.track,
        };
        let result = seed.deserialize(node);
        self.track.note(&chain, result)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// The elements of an array, each decoded with its index on the path.
struct Elements<'de, 'c> {
    items: std::slice::Iter<'de, Value>,
    index: usize,
    chain: &'c Chain<'c>,
    track: &'c Track,
}

impl<'de> SeqAccess<'de> for Elements<'de, '_> {
    type Error = Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Error> {
        let Some(value) = self.items.next() else {
            return Ok(None);
        };
        let chain = Chain::Index(self.chain, self.index);
        self.index += 1;
        let node = Node {
            value,
            chain: &chain,
            track: self.track,
        };
        let result = seed.deserialize(node);
        self.track.note(&chain, result).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

/// An object key. Keys are strings in JSON; integer map keys are read from them, as
/// serde_json does.
struct Key<'de>(&'de str);

macro_rules! integer_keys {
    ($($method:ident $visit:ident $ty:ty,)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
                match self.0.parse::<$ty>() {
                    Ok(n) => visitor.$visit(n),
                    Err(_) => Err(de::Error::invalid_type(Unexpected::Str(self.0), &visitor)),
                }
            }
        )*
    };
}

impl<'de> Deserializer<'de> for Key<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_borrowed_str(self.0)
    }

    integer_keys! {
        deserialize_i8 visit_i8 i8,
        deserialize_i16 visit_i16 i16,
        deserialize_i32 visit_i32 i32,
        deserialize_i64 visit_i64 i64,
        deserialize_u8 visit_u8 u8,
        deserialize_u16 visit_u16 u16,
        deserialize_u32 visit_u32 u32,
        deserialize_u64 visit_u64 u64,
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        BorrowedStrDeserializer::<Error>::new(self.0).deserialize_enum(name, variants, visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i128 u128 f32 f64 char str string bytes byte_buf unit unit_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

/// `{"variant": value}` of an enum with data.
struct Variant<'de, 'c> {
    name: &'de str,
    value: &'de Value,
    chain: &'c Chain<'c>,
    track: &'c Track,
}

impl<'de, 'c> EnumAccess<'de> for Variant<'de, 'c> {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Self), Error> {
        let variant = seed.deserialize(BorrowedStrDeserializer::<Error>::new(self.name))?;
        Ok((variant, self))
    }
}

impl<'de> Variant<'de, '_> {
    /// Decodes the variant's value with the variant's name on the path.
    fn inside<T>(self, decode: impl FnOnce(Node<'de, '_>) -> Result<T, Error>) -> Result<T, Error> {
        let chain = Chain::Key(self.chain, self.name);
        let node = Node {
            value: self.value,
            chain: &chain,
            track: self.track,
        };
        let result = decode(node);
        self.track.note(&chain, result)
    }
}

impl<'de> VariantAccess<'de> for Variant<'de, '_> {
    type Error = Error;

    /// A variant without data is written as its name: `{"name": null}` is refused, as
    /// the CRD's schema (a string) refuses it.
    fn unit_variant(self) -> Result<(), Error> {
        Err(de::Error::invalid_type(Unexpected::Map, &"a string"))
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, Error> {
        self.inside(|node| seed.deserialize(node))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        self.inside(|node| node.visit_array(visitor))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.inside(|node| node.visit_object(visitor))
    }
}
