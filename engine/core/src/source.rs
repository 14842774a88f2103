//! Reading a flow file: YAML or JSON text into a [`Flow`], with file positions for diagnostics.
//!
//! Two passes over the text: an event pass (yaml-rust2) records where every key sits and finds
//! duplicate keys, which serde would silently merge; a serde pass builds the typed flow. Each node
//! is deserialized on its own, so one broken node does not hide the problems of the others.

use std::collections::{HashMap, HashSet};

use indexmap::IndexMap;
use serde::Deserialize;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

use crate::diagnostic::{Code, Diagnostic, Position};
use crate::model::{Flow, Intent, Node, Variable};
use crate::suggest::did_you_mean;

/// Flow files larger than this are refused before parsing.
pub const MAX_FLOW_BYTES: usize = 8 * 1024 * 1024;
/// Flow files nested deeper than this are refused.
pub const MAX_DEPTH: usize = 64;

/// A flow file's name and text.
#[derive(Debug, Clone)]
pub struct Source {
    /// The file name shown in diagnostics.
    pub name: String,
    /// The YAML or JSON text.
    pub text: String,
}

impl Source {
    /// A source named `name` with `text`.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Source {
            name: name.into(),
            text: text.into(),
        }
    }
}

/// Where the keys of a flow file are, by dotted path (`nodes.ask_email.next`).
#[derive(Debug, Clone, Default)]
pub struct Positions {
    keys: HashMap<String, Position>,
}

impl Positions {
    /// The position of the key at `path`, e.g. `["nodes", "welcome", "next"]`.
    pub fn get(&self, path: &[&str]) -> Option<Position> {
        self.keys.get(&path.join(".")).copied()
    }

    /// The first key at or under `prefix` (e.g. the first key of a list item `cases.0.turns.2`).
    pub fn first_under(&self, prefix: &str) -> Option<Position> {
        let nested = format!("{prefix}.");
        self.keys
            .iter()
            .filter(|(path, _)| *path == prefix || path.starts_with(&nested))
            .map(|(_, position)| *position)
            .min()
    }

    /// Where the keys of any YAML or JSON text are (best effort: empty when it does not parse).
    pub fn of(text: &str) -> Self {
        let mut scanner = PositionScanner::default();
        let mut parser = Parser::new_from_str(text);
        let _ = parser.load(&mut scanner, false);
        scanner.positions
    }

    /// The position of node `id`'s key.
    pub fn node(&self, id: &str) -> Option<Position> {
        self.get(&["nodes", id])
    }

    /// The position of field `field` of node `id`, or of the node itself.
    pub fn node_field(&self, id: &str, field: &str) -> Option<Position> {
        self.get(&["nodes", id, field]).or_else(|| self.node(id))
    }
}

/// A parsed flow file: the flow (minus nodes that did not parse), its positions and what went
/// wrong while reading it.
#[derive(Debug, Clone)]
pub struct ParsedFlow {
    /// The file name.
    pub file: String,
    /// The flow, with only the nodes that parsed.
    pub flow: Flow,
    /// Key positions.
    pub positions: Positions,
    /// Nodes that exist in the file but did not parse; edges to them are not "unknown".
    pub broken_nodes: HashSet<String>,
}

/// The top level of a flow file, with nodes kept raw so that each can fail on its own.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlow {
    #[serde(rename = "$schema", default)]
    schema: Option<String>,
    id: String,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    variables: IndexMap<String, Variable>,
    start: String,
    #[serde(default)]
    intents: IndexMap<String, Intent>,
    nodes: IndexMap<String, serde_json::Value>,
}

/// Parses one flow file. Returns the flow when its top level could be read (even if some nodes
/// could not), and every diagnostic found on the way.
pub fn parse(source: &Source) -> (Option<ParsedFlow>, Vec<Diagnostic>) {
    let file = source.name.clone();
    let mut diagnostics = Vec::new();
    let mut report = |d: Diagnostic| {
        diagnostics.push(Diagnostic {
            file: Some(file.clone()),
            ..d
        })
    };

    // Editors on some systems start UTF-8 files with a byte-order mark; it is not content.
    let text = source.text.strip_prefix('\u{feff}').unwrap_or(&source.text);
    if text.len() > MAX_FLOW_BYTES {
        report(Diagnostic::error(
            Code::Syntax,
            format!(
                "the file is {} bytes; flow files are limited to {MAX_FLOW_BYTES} bytes",
                text.len()
            ),
        ));
        return (None, diagnostics);
    }
    if text
        .lines()
        .all(|line| line.trim().is_empty() || line.trim_start().starts_with('#'))
    {
        report(
            Diagnostic::error(Code::Syntax, "the file is empty")
                .help("a flow needs at least `id`, `start` and `nodes`"),
        );
        return (None, diagnostics);
    }

    let is_json = source.name.ends_with(".json");
    let positions = match scan_positions(text) {
        Ok((positions, duplicates)) => {
            for (path, position) in duplicates {
                let message = match path.as_slice() {
                    [nodes, id] if nodes == "nodes" => format!("duplicate node id `{id}`"),
                    _ => format!("duplicate key `{}`", path.join(".")),
                };
                let mut d = Diagnostic::error(Code::Duplicate, message)
                    .at(Some(position))
                    .help("ids must be unique; the later definition would silently replace the earlier one");
                if path.len() == 2 && path[0] == "nodes" {
                    d = d.at_node(path[1].clone());
                }
                report(d);
            }
            positions
        }
        Err(scan) if !is_json => {
            report(scan);
            return (None, diagnostics);
        }
        // JSON that the YAML scanner dislikes (tabs, for instance) is still read by serde_json,
        // without positions.
        Err(_) => Positions::default(),
    };

    let raw: RawFlow = match read_raw(text, is_json) {
        Ok(raw) => raw,
        Err(d) => {
            report(d);
            return (None, diagnostics);
        }
    };

    let mut nodes = IndexMap::new();
    let mut broken_nodes = HashSet::new();
    for (id, value) in raw.nodes {
        let at = positions.node(&id);
        match parse_node(&id, value, &positions) {
            Ok(node) => {
                nodes.insert(id, node);
            }
            Err(d) => {
                // The node's own line only when the problem has no more precise position.
                let d = if d.position.is_none() { d.at(at) } else { d };
                report(d.at_node(id.clone()));
                broken_nodes.insert(id);
            }
        }
    }

    let flow = Flow {
        schema: raw.schema,
        id: raw.id,
        title: raw.title,
        description: raw.description,
        variables: raw.variables,
        start: raw.start,
        intents: raw.intents,
        nodes,
    };
    let parsed = ParsedFlow {
        file: source.name.clone(),
        flow,
        positions,
        broken_nodes,
    };
    (Some(parsed), diagnostics)
}

fn read_raw(text: &str, is_json: bool) -> Result<RawFlow, Diagnostic> {
    if is_json {
        return serde_json::from_str(text).map_err(|err| {
            let position = Position {
                line: err.line(),
                column: err.column(),
            };
            shape_or_syntax(err.is_data(), err.to_string()).at(Some(position))
        });
    }
    serde_yaml_ng::from_str(text).map_err(|err| {
        let position = err.location().map(|l| Position {
            line: l.line(),
            column: l.column(),
        });
        let message = err.to_string();
        // serde_yaml_ng appends " at line L column C"; the position is reported separately.
        let message = match message.find(" at line ") {
            Some(cut) => message[..cut].to_string(),
            None => message,
        };
        let is_data = message.contains("missing field")
            || message.contains("unknown field")
            || message.contains("invalid type")
            || message.contains("invalid value")
            || message.contains("duration");
        shape_or_syntax(is_data, message).at(position)
    })
}

fn shape_or_syntax(is_data: bool, message: String) -> Diagnostic {
    if is_data {
        Diagnostic::error(Code::Shape, message)
    } else {
        Diagnostic::error(Code::Syntax, format!("not a valid flow file: {message}"))
    }
}

fn parse_node(
    id: &str,
    value: serde_json::Value,
    positions: &Positions,
) -> Result<Node, Diagnostic> {
    let kind = match value.get("kind") {
        Some(serde_json::Value::String(kind)) => kind.clone(),
        Some(other) => {
            return Err(Diagnostic::error(
                Code::Shape,
                format!("node `{id}`: `kind` must be a string, found {other}"),
            ));
        }
        None if value.is_object() => {
            return Err(
                Diagnostic::error(Code::Shape, format!("node `{id}` has no `kind`"))
                    .help(format!("one of: {}", Node::KINDS.join(", "))),
            );
        }
        None => {
            return Err(Diagnostic::error(
                Code::Shape,
                format!("node `{id}` must be a mapping with a `kind`, found {value}"),
            ));
        }
    };
    if !Node::KINDS.contains(&kind.as_str()) {
        let mut d = Diagnostic::error(
            Code::UnknownKind,
            format!("node `{id}` has unknown kind `{kind}`"),
        )
        .at(positions.node_field(id, "kind"));
        d = match did_you_mean(&kind, Node::KINDS.iter().copied()) {
            Some(best) => d.help(format!("did you mean `{best}`?")),
            None => d.help(format!("one of: {}", Node::KINDS.join(", "))),
        };
        return Err(d);
    }
    serde_json::from_value(value).map_err(|err| {
        let message = err.to_string();
        // Point at the offending field when serde names it.
        let field = message
            .split('`')
            .nth(1)
            .filter(|_| message.starts_with("unknown field"))
            .map(str::to_string);
        let position = field.and_then(|f| positions.get(&["nodes", id, &f]));
        Diagnostic::error(Code::Shape, format!("node `{id}` ({kind}): {message}")).at(position)
    })
}

/// Duplicate keys found while scanning: their path and position.
type Duplicates = Vec<(Vec<String>, Position)>;

/// Records the position of every mapping key and finds duplicate keys.
fn scan_positions(text: &str) -> Result<(Positions, Duplicates), Diagnostic> {
    let mut scanner = PositionScanner::default();
    let mut parser = Parser::new_from_str(text);
    let result = parser.load(&mut scanner, false);
    if let Some(d) = scanner.failure.take() {
        return Err(d);
    }
    if let Err(err) = result {
        let m = err.marker();
        return Err(
            Diagnostic::error(Code::Syntax, format!("not valid YAML: {}", err.info()))
                .at(Some(position(m))),
        );
    }
    if !scanner.saw_root_mapping {
        return Err(Diagnostic::error(
            Code::Syntax,
            "a flow file must be a mapping with `id`, `start` and `nodes`",
        ));
    }
    Ok((scanner.positions, scanner.duplicates))
}

fn position(m: &Marker) -> Position {
    Position {
        line: m.line(),
        column: m.col() + 1,
    }
}

#[derive(Debug)]
enum Frame {
    Map {
        path: Vec<String>,
        key: Option<String>,
        seen: HashSet<String>,
    },
    Seq {
        path: Vec<String>,
        index: usize,
    },
}

#[derive(Debug, Default)]
struct PositionScanner {
    stack: Vec<Frame>,
    positions: Positions,
    duplicates: Vec<(Vec<String>, Position)>,
    saw_root_mapping: bool,
    documents: usize,
    failure: Option<Diagnostic>,
}

impl PositionScanner {
    /// The path of the value that starts now, or `None` when a key is expected (maps) .
    fn value_path(&mut self) -> Option<Vec<String>> {
        match self.stack.last_mut() {
            None => Some(Vec::new()),
            Some(Frame::Map { path, key, .. }) => key.take().map(|k| {
                let mut p = path.clone();
                p.push(k);
                p
            }),
            Some(Frame::Seq { path, index }) => {
                let mut p = path.clone();
                p.push(index.to_string());
                *index += 1;
                Some(p)
            }
        }
    }
}

impl MarkedEventReceiver for PositionScanner {
    fn on_event(&mut self, event: Event, mark: Marker) {
        if self.failure.is_some() {
            return;
        }
        match event {
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    self.failure = Some(
                        Diagnostic::error(
                            Code::Syntax,
                            "a flow file holds one YAML document, found several",
                        )
                        .at(Some(position(&mark))),
                    );
                }
            }
            Event::Scalar(value, ..) => {
                let expecting_key = matches!(self.stack.last(), Some(Frame::Map { key: None, .. }));
                if expecting_key {
                    if let Some(Frame::Map { path, key, seen }) = self.stack.last_mut() {
                        let mut full = path.clone();
                        full.push(value.clone());
                        let joined = full.join(".");
                        if !seen.insert(value.clone()) {
                            self.duplicates.push((full, position(&mark)));
                        } else {
                            self.positions.keys.entry(joined).or_insert(position(&mark));
                        }
                        *key = Some(value);
                    }
                } else {
                    self.value_path();
                }
            }
            Event::Alias(_) => {
                self.value_path();
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                if self.stack.len() >= MAX_DEPTH {
                    self.failure = Some(
                        Diagnostic::error(
                            Code::Syntax,
                            format!("the file is nested deeper than {MAX_DEPTH} levels"),
                        )
                        .at(Some(position(&mark))),
                    );
                    return;
                }
                // A collection used as a mapping key gets a placeholder name.
                let path = self.value_path().unwrap_or_else(|| vec!["?".to_string()]);
                if self.stack.is_empty() && matches!(event, Event::MappingStart(..)) {
                    self.saw_root_mapping = true;
                }
                self.stack.push(match event {
                    Event::MappingStart(..) => Frame::Map {
                        path,
                        key: None,
                        seen: HashSet::new(),
                    },
                    _ => Frame::Seq { path, index: 0 },
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_node_positions_and_duplicates() {
        let text = "id: f\nstart: a\nnodes:\n  a:\n    kind: end\n  a:\n    kind: end\n";
        let (parsed, diagnostics) = parse(&Source::new("f.yaml", text));
        let parsed = parsed.unwrap();
        assert_eq!(
            parsed.positions.node("a"),
            Some(Position { line: 4, column: 3 })
        );
        assert_eq!(diagnostics.len(), 1);
        assert_eq!(diagnostics[0].code, Code::Duplicate);
        assert_eq!(
            diagnostics[0].position,
            Some(Position { line: 6, column: 3 })
        );
    }
}
