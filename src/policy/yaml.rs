//! YAML with positions: parses a document with a maintained parser that keeps a span on every node
//! (`marked-yaml`), deserializes it with serde (errors carry the field path and the position of the
//! offending key or value), and keeps an index from field paths (`a.b[2].c`) to positions so checks
//! made after deserializing can point at the value they reject.

use std::collections::BTreeMap;

use marked_yaml::{LoaderOptions, Node};
use serde::de::DeserializeOwned;

/// A 1-based line and column.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Position {
    /// Line (0 if unknown).
    pub line: usize,
    /// Column (0 if unknown).
    pub column: usize,
}

/// A document that could not be read into the wanted type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct YamlError {
    /// Where.
    pub position: Position,
    /// Dotted path of the field (`.` for the document).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// Positions of every key and value of a document, by field path.
#[derive(Clone, Debug, Default)]
pub struct Positions {
    values: BTreeMap<String, Position>,
}

impl Positions {
    /// The position of the value at `path`, else of its nearest ancestor that has one.
    pub fn of(&self, path: &str) -> Position {
        let mut p = path.to_owned();
        loop {
            if let Some(pos) = self.values.get(&p) {
                return *pos;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p.truncate(i),
                None => return self.values.get("").copied().unwrap_or_default(),
            }
        }
    }

    fn record(&mut self, node: &Node, path: String) {
        if let Some(start) = node.span().start() {
            self.values.entry(path.clone()).or_insert(Position {
                line: start.line(),
                column: start.column(),
            });
        }
        match node {
            Node::Mapping(map) => {
                for (key, value) in map.iter() {
                    let child = if path.is_empty() {
                        key.as_str().to_owned()
                    } else {
                        format!("{path}.{}", key.as_str())
                    };
                    self.record(value, child);
                }
            }
            Node::Sequence(seq) => {
                for (i, item) in seq.iter().enumerate() {
                    self.record(item, format!("{path}[{i}]"));
                }
            }
            Node::Scalar(_) => {}
        }
    }
}

/// Parses `text` (a mapping at the top) into `T`; duplicate keys are errors.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<(T, Positions), YamlError> {
    let options = LoaderOptions::default().error_on_duplicate_keys(true);
    let node = marked_yaml::parse_yaml_with_options(0, text, options).map_err(load_error)?;
    let mut positions = Positions::default();
    positions.record(&node, String::new());
    let value = marked_yaml::from_node::<T>(&node).map_err(|e| {
        let field = e.path().filter(|p| !p.is_empty()).unwrap_or(".").to_owned();
        let position = e
            .start_mark()
            .map(|m| Position {
                line: m.line(),
                column: m.column(),
            })
            .unwrap_or_else(|| positions.of(&field));
        YamlError {
            position,
            field,
            message: plain_message(&e.into_inner().to_string()),
        }
    })?;
    Ok((value, positions))
}

/// A serde message for people: a number that does not parse says what a number here is.
fn plain_message(message: &str) -> String {
    if message.contains("invalid digit found in string") {
        return "expected a whole number of 0 or more (like 30)".to_owned();
    }
    if message.contains("number too large to fit in target type") {
        return "the number is too large".to_owned();
    }
    message.to_owned()
}

fn load_error(e: marked_yaml::LoadError) -> YamlError {
    use marked_yaml::LoadError as L;
    let (mark, message) = match &e {
        L::TopLevelMustBeMapping(m) => (Some(*m), "the document must be a mapping".to_owned()),
        L::TopLevelMustBeSequence(m) => (Some(*m), "the document must be a sequence".to_owned()),
        L::UnexpectedAnchor(m) => (Some(*m), "anchors and aliases are not supported".to_owned()),
        L::MappingKeyMustBeScalar(m) => (Some(*m), "mapping keys must be scalars".to_owned()),
        L::UnexpectedTag(m) => (Some(*m), "YAML tags are not supported".to_owned()),
        L::ScanError(m, s) => (Some(*m), format!("malformed YAML: {s}")),
        L::DuplicateKey(d) => (
            d.key.span().start().copied(),
            format!(
                "duplicate key `{}` (first at line {})",
                d.key.as_str(),
                d.prev_key.span().start().map_or(0, |m| m.line())
            ),
        ),
    };
    YamlError {
        position: mark.map_or_else(Position::default, |m| Position {
            line: m.line(),
            column: m.column(),
        }),
        field: ".".to_owned(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        a: u32,
        #[serde(default)]
        list: Vec<Item>,
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        name: String,
        #[serde(default)]
        port: u16,
    }

    #[test]
    fn a_bad_value_deep_in_a_list_is_located_at_the_value() {
        let err =
            from_str::<Doc>("a: 1\nlist:\n  - name: x\n  - name: y\n    port: http\n").unwrap_err();
        assert_eq!(err.field, "list[1].port", "{err:?}");
        assert_eq!(err.position.line, 5, "{err:?}");
        assert_eq!(err.position.column, 11, "{err:?}");
    }

    #[test]
    fn an_unknown_key_is_located_at_the_key() {
        let err = from_str::<Doc>("a: 1\nlist:\n  - name: x\n    nmae: y\n").unwrap_err();
        assert_eq!(err.position.line, 4, "{err:?}");
        assert!(err.message.contains("nmae"), "{err:?}");
    }

    #[test]
    fn positions_are_indexed_by_field_path() {
        let (_, pos) =
            from_str::<Doc>("a: 1\nlist:\n  - name: x\n  - name: y\n    port: 8\n").unwrap();
        assert_eq!(pos.of("list[1].port").line, 5);
        assert_eq!(pos.of("list[1].name").line, 4);
        assert_eq!(
            pos.of("list[1].missing").line,
            4,
            "falls back to the parent"
        );
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let err = from_str::<Doc>("a: 1\na: 2\n").unwrap_err();
        assert_eq!(err.position.line, 2, "{err:?}");
        assert!(err.message.contains("duplicate key `a`"), "{err:?}");
    }

    #[test]
    fn malformed_yaml_names_the_line() {
        let err = from_str::<Doc>("a: 1\nlist: [\n").unwrap_err();
        assert!(err.position.line >= 2, "{err:?}");
    }
}
