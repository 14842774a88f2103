//! A flow ready to draw: a box for every node (plus the start marker, the other flows its edges
//! lead to, and its intents) and its labelled edges, placed by `layout`. The page only turns
//! it into SVG: the drawing is computed here, deterministically, and tested without a browser.

use std::collections::HashMap;

use influxify_core::graph::Target;
use influxify_core::model::{Flow, Node};
use serde::Serialize;

use super::layout::{NODE_HEIGHT, layout};

/// The longest detail shown in a box, in characters.
const DETAIL_CHARS: usize = 80;

/// One flow, ready to draw.
#[derive(Debug, Clone, Serialize)]
pub struct Drawing {
    /// The flow's id.
    pub id: String,
    /// Its title, when the flow has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The file it came from.
    pub file: String,
    /// Its start node.
    pub start: String,
    /// The boxes, each at its place.
    pub boxes: Vec<DrawnBox>,
    /// The edges between boxes.
    pub edges: Vec<DrawnEdge>,
    /// The drawing's width, in pixels.
    pub width: u32,
    /// The drawing's height, in pixels.
    pub height: u32,
}

/// What a box stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BoxKind {
    /// Where a conversation enters the flow.
    Start,
    /// A node of the flow (its kind is in `DrawnBox::node_kind`).
    Node,
    /// Another flow (or a node of it) that a jump or call leads to.
    Flow,
    /// A global intent that leads to a node.
    Intent,
}

/// A box of the drawing, its top-left corner at (`x`, `y`).
#[derive(Debug, Clone, Serialize)]
pub struct DrawnBox {
    /// The box's key in this drawing (`start`, `n0`, `f0`, `i0` ...): node ids may hold any
    /// character, so edges refer to keys.
    pub key: String,
    /// What the box stands for.
    pub kind: BoxKind,
    /// The node's id, for a box of a node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The node's kind (`ask`, `message` ...), for a box of a node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_kind: Option<&'static str>,
    /// The first line: the node id, `start`, `flow other` or `intent: name`.
    pub title: String,
    /// What the node does (its text, prompt, expression ...), shortened.
    pub detail: String,
    /// The layer, counted from the start marker's (0).
    pub layer: u32,
    /// Left edge, in pixels.
    pub x: u32,
    /// Top edge, in pixels.
    pub y: u32,
}

/// An edge between two boxes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DrawnEdge {
    /// The key of the box it leaves.
    pub from: String,
    /// The key of the box it reaches.
    pub to: String,
    /// Its label (`next`, `then`, an outcome, a `when` expression ...); empty for the start's.
    pub label: String,
    /// Whether it leaves the flow (a jump or call to another flow) or comes from an intent.
    pub dashed: bool,
    /// The points the line goes through, from its source to the top of its target; the page
    /// joins each two with a curve inside the rectangle they span.
    pub points: Vec<[u32; 2]>,
    /// Where the label's centre goes.
    pub label_at: [u32; 2],
}

/// Lays out `flow`, read from `file`.
pub fn draw(flow: &Flow, file: &str) -> Drawing {
    let (mut boxes, mut edges) = boxes_and_edges(flow);
    let keys: HashMap<&str, usize> = boxes
        .iter()
        .enumerate()
        .map(|(i, b)| (b.key.as_str(), i))
        .collect();
    let links: Vec<(usize, usize)> = edges
        .iter()
        .map(|e| (keys[e.from.as_str()], keys[e.to.as_str()]))
        .collect();
    let placed = layout(boxes.len(), &links);
    for (drawn, place) in boxes.iter_mut().zip(&placed.nodes) {
        (drawn.layer, drawn.x, drawn.y) = (place.layer, place.x, place.y);
    }
    for ((edge, route), &(from, _)) in edges.iter_mut().zip(placed.routes).zip(&links) {
        edge.points = route.points;
        edge.label_at = route.label_at;
        // The start marker is a dot in the middle of its box: its edge leaves from there.
        if boxes[from].kind == BoxKind::Start
            && let Some(first) = edge.points.first_mut()
        {
            first[1] -= NODE_HEIGHT / 2;
        }
    }
    Drawing {
        id: flow.id.clone(),
        title: flow.title.clone(),
        file: file.to_string(),
        start: flow.start.clone(),
        boxes,
        edges,
        width: placed.width,
        height: placed.height,
    }
}

/// The boxes (unplaced) and edges of `flow`. Edges to nodes the flow lacks are left out: a
/// published flow has none.
fn boxes_and_edges(flow: &Flow) -> (Vec<DrawnBox>, Vec<DrawnEdge>) {
    let mut boxes = vec![unplaced("start".into(), BoxKind::Start, "start".into(), "")];
    let mut node_keys: HashMap<&str, String> = HashMap::new();
    for (i, (id, node)) in flow.nodes.iter().enumerate() {
        let key = format!("n{i}");
        node_keys.insert(id.as_str(), key.clone());
        let mut drawn = unplaced(key, BoxKind::Node, id.clone(), &detail(node));
        drawn.node = Some(id.clone());
        drawn.node_kind = Some(node.kind());
        boxes.push(drawn);
    }
    let mut edges = Vec::new();
    if let Some(first) = node_keys.get(flow.start.as_str()) {
        edges.push(edge("start", first, "", false));
    }
    let mut exits: Vec<String> = Vec::new();
    for (id, node) in &flow.nodes {
        let from = &node_keys[id.as_str()];
        for (label, target) in influxify_core::graph::edges(node) {
            match target {
                Target::Node(to) => {
                    if let Some(to) = node_keys.get(to) {
                        edges.push(edge(from, to, &label, false));
                    }
                }
                Target::Flow(other, at) => {
                    let title = match at {
                        Some(at) => format!("flow {other}: {at}"),
                        None => format!("flow {other}"),
                    };
                    let to = exit_key(&mut boxes, &mut exits, title);
                    edges.push(edge(from, &to, &label, true));
                }
            }
        }
    }
    for (i, (name, intent)) in flow.intents.iter().enumerate() {
        if let Some(to) = intent.goto.as_deref().and_then(|g| node_keys.get(g)) {
            let key = format!("i{i}");
            let words = intent.keywords.join(", ");
            boxes.push(unplaced(
                key.clone(),
                BoxKind::Intent,
                format!("intent: {name}"),
                &words,
            ));
            edges.push(edge(&key, to, "", true));
        }
    }
    (boxes, edges)
}

/// The key of the box for another flow titled `title`, added on first use.
fn exit_key(boxes: &mut Vec<DrawnBox>, exits: &mut Vec<String>, title: String) -> String {
    let index = match exits.iter().position(|t| *t == title) {
        Some(index) => index,
        None => {
            exits.push(title.clone());
            let key = format!("f{}", exits.len() - 1);
            boxes.push(unplaced(key, BoxKind::Flow, title, ""));
            exits.len() - 1
        }
    };
    format!("f{index}")
}

fn unplaced(key: String, kind: BoxKind, title: String, detail: &str) -> DrawnBox {
    DrawnBox {
        key,
        kind,
        node: None,
        node_kind: None,
        title,
        detail: shorten(detail),
        layer: 0,
        x: 0,
        y: 0,
    }
}

fn edge(from: &str, to: &str, label: &str, dashed: bool) -> DrawnEdge {
    DrawnEdge {
        from: from.to_string(),
        to: to.to_string(),
        label: label.to_string(),
        dashed,
        points: Vec::new(),
        label_at: [0, 0],
    }
}

/// What a node does, in a few words.
fn detail(node: &Node) -> String {
    match node {
        Node::Message(m) => {
            let texts = m.text.as_slice();
            let first = texts.first().cloned().unwrap_or_default();
            match texts.len() {
                0 | 1 => first,
                n => format!("{first} (+{} more)", n - 1),
            }
        }
        Node::Ask(a) => a.prompt.clone(),
        Node::Condition(c) => format!("if {}", c.condition),
        Node::Switch(s) => format!("{} case(s)", s.cases.len()),
        Node::Set(s) => s.assign.keys().cloned().collect::<Vec<_>>().join(", "),
        Node::Jump(j) => match (&j.flow, &j.to) {
            (Some(flow), Some(to)) => format!("to {flow}: {to}"),
            (Some(flow), None) => format!("to flow {flow}"),
            (None, Some(to)) => format!("to {to}"),
            (None, None) => String::new(),
        },
        Node::Call(c) => format!("flow {}", c.flow),
        Node::Plugin(p) => p.action.clone(),
        Node::Wait(w) => format!("for {}", w.duration),
        Node::Handoff(h) => h
            .reason
            .clone()
            .or_else(|| h.text.clone())
            .unwrap_or_default(),
        Node::End(e) => e.text.clone().unwrap_or_default(),
    }
}

/// `text` on one line, at most `DETAIL_CHARS` characters.
fn shorten(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= DETAIL_CHARS {
        return line;
    }
    let mut short: String = line.chars().take(DETAIL_CHARS - 1).collect();
    short.push('…');
    short
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::playground::layout::NODE_WIDTH;

    fn flow(yaml: &str) -> Flow {
        let source = influxify_core::Source::new("test.yaml", yaml);
        let (parsed, diagnostics) = influxify_core::source::parse(&source);
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        parsed.expect("the flow parses").flow
    }

    fn placed<'a>(drawing: &'a Drawing, node: &str) -> &'a DrawnBox {
        drawing
            .boxes
            .iter()
            .find(|b| b.node.as_deref() == Some(node) || b.title == node)
            .unwrap_or_else(|| panic!("no box {node}"))
    }

    const FLOW: &str = r#"
id: order
start: ask
intents:
  help: { keywords: [help], goto: helpdesk }
nodes:
  ask: { kind: ask, prompt: "Which   size?\nS, M or L", store: size, next: check, invalid: ask }
  check: { kind: condition, if: "size == 'L'", then: big, else: small }
  big: { kind: message, text: [Big., Really big.], next: done }
  small: { kind: jump, flow: shop, to: basket }
  done: { kind: end }
  helpdesk: { kind: handoff, reason: "asked for help", next: ask }
"#;

    #[test]
    fn boxes_go_down_in_layers_from_the_start() {
        let drawing = draw(&flow(FLOW), "order.yaml");
        let layer = |n: &str| placed(&drawing, n).layer;
        assert_eq!(
            [
                "start",
                "ask",
                "check",
                "big",
                "small",
                "done",
                "flow shop: basket"
            ]
            .map(layer),
            [0, 1, 2, 3, 3, 4, 4]
        );
        // Only an intent leads to the helpdesk: both stand beside the nodes reached from the
        // start, the intent above what it leads to.
        assert_eq!(layer("intent: help") + 1, layer("helpdesk"));
        let (big, small) = (placed(&drawing, "big"), placed(&drawing, "small"));
        assert_eq!(big.y, small.y);
        assert!(
            big.x.abs_diff(small.x) >= NODE_WIDTH,
            "boxes do not overlap"
        );
        // The start's edge leaves from the middle of its dot.
        let start = placed(&drawing, "start");
        let first = drawing.edges.iter().find(|e| e.from == start.key).unwrap();
        assert_eq!(
            first.points[0],
            [start.x + NODE_WIDTH / 2, start.y + NODE_HEIGHT / 2]
        );
    }

    #[test]
    fn edges_carry_their_labels_and_other_flows_are_boxes_of_their_own() {
        let drawing = draw(&flow(FLOW), "order.yaml");
        let key = |n: &str| placed(&drawing, n).key.clone();
        let has = |from: &str, to: &str, label: &str, dashed: bool| {
            let (from, to) = (key(from), key(to));
            drawing.edges.iter().any(|e| {
                (&e.from, &e.to, e.label.as_str(), e.dashed) == (&from, &to, label, dashed)
            })
        };
        assert!(has("start", "ask", "", false));
        assert!(has("ask", "ask", "invalid", false));
        assert!(has("check", "big", "then", false));
        assert!(has("check", "small", "else", false));
        assert!(has("small", "flow shop: basket", "jump", true));
        assert!(has("intent: help", "helpdesk", "", true));
        assert_eq!(drawing.edges.len(), 9);
    }

    #[test]
    fn details_say_what_a_node_does_on_one_short_line() {
        let drawing = draw(&flow(FLOW), "order.yaml");
        let detail = |n: &str| placed(&drawing, n).detail.clone();
        assert_eq!(detail("ask"), "Which size? S, M or L");
        assert_eq!(detail("check"), "if size == 'L'");
        assert_eq!(detail("big"), "Big. (+1 more)");
        assert_eq!(detail("helpdesk"), "asked for help");
        assert_eq!(placed(&drawing, "ask").node_kind, Some("ask"));
        let long = shorten(&"word ".repeat(40));
        assert_eq!(long.chars().count(), DETAIL_CHARS);
        assert!(long.ends_with('…'));
    }
}
