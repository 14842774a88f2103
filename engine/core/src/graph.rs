//! A flow as a petgraph graph: the edges every node kind has, and drawings in Mermaid and DOT.

use std::collections::HashMap;
use std::fmt::Write;

use petgraph::graph::{DiGraph, NodeIndex};

use crate::model::{Flow, Node};

/// Where an edge leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target<'a> {
    /// A node of the same flow.
    Node(&'a str),
    /// Another flow (at a node, or its start): a jump or a call.
    Flow(&'a str, Option<&'a str>),
}

/// The labelled edges out of a node, in a stable order.
pub fn edges(node: &Node) -> Vec<(String, Target<'_>)> {
    fn push<'n>(out: &mut Vec<(String, Target<'n>)>, label: &str, target: Option<&'n String>) {
        if let Some(t) = target {
            out.push((label.to_string(), Target::Node(t.as_str())));
        }
    }
    let mut out = Vec::new();
    let o = &mut out;
    match node {
        Node::Message(m) => push(o, "next", m.next.as_ref()),
        Node::Ask(a) => {
            push(o, "next", a.next.as_ref());
            push(o, "invalid", a.invalid.as_ref());
            push(o, "timeout", a.timeout.as_ref().map(|t| &t.next));
        }
        Node::Condition(c) => {
            push(o, "then", Some(&c.then));
            push(o, "else", Some(&c.otherwise));
        }
        Node::Switch(s) => {
            for case in &s.cases {
                push(o, &case.when, Some(&case.next));
            }
            push(o, "default", Some(&s.default));
        }
        Node::Set(s) => push(o, "next", s.next.as_ref()),
        Node::Jump(j) => match &j.flow {
            Some(flow) => o.push(("jump".to_string(), Target::Flow(flow, j.to.as_deref()))),
            None => push(o, "jump", j.to.as_ref()),
        },
        Node::Call(c) => {
            o.push(("call".to_string(), Target::Flow(&c.flow, None)));
            push(o, "next", c.next.as_ref());
        }
        Node::Plugin(p) => {
            for (outcome, target) in &p.on {
                push(o, outcome, Some(target));
            }
        }
        Node::Wait(w) => {
            push(o, "next", w.next.as_ref());
            push(o, "interrupted", w.interrupted.as_ref());
        }
        Node::Handoff(h) => push(o, "resumed", h.next.as_ref()),
        Node::End(_) => {}
    }
    out
}

/// A flow's nodes and in-flow edges as a directed graph (edges to unknown nodes are left out).
#[derive(Debug)]
pub struct FlowGraph<'a> {
    /// Node weights are node ids; edge weights are labels.
    pub graph: DiGraph<&'a str, String>,
    /// Graph index of each node id.
    pub index: HashMap<&'a str, NodeIndex>,
}

impl<'a> FlowGraph<'a> {
    /// Builds the graph of `flow`.
    pub fn new(flow: &'a Flow) -> Self {
        let mut graph = DiGraph::with_capacity(flow.nodes.len(), flow.nodes.len() * 2);
        let mut index = HashMap::with_capacity(flow.nodes.len());
        for id in flow.nodes.keys() {
            index.insert(id.as_str(), graph.add_node(id.as_str()));
        }
        for (id, node) in &flow.nodes {
            for (label, target) in edges(node) {
                if let Target::Node(target) = target
                    && let Some(to) = index.get(target)
                {
                    graph.add_edge(index[id.as_str()], *to, label);
                }
            }
        }
        FlowGraph { graph, index }
    }
}

fn node_label(id: &str, node: &Node) -> String {
    format!("{id}\n({})", node.kind())
}

/// Mermaid labels are quoted; quotes become the `#quot;` entity and nothing else is special.
fn mermaid_label(text: &str) -> String {
    text.replace('"', "#quot;").replace('\n', "<br/>")
}

/// Diagram ids are generated (`n0`, `n1`, `f0`, `i0` ...): node ids, flow ids and intent names
/// may hold any character, and two of them must never meet in one diagram id.
fn diagram_ids(flow: &Flow) -> HashMap<&str, String> {
    flow.nodes
        .keys()
        .enumerate()
        .map(|(i, id)| (id.as_str(), format!("n{i}")))
        .collect()
}

/// The other flows an edge leads to, each with a generated id and a label.
fn external_targets(flow: &Flow) -> Vec<(String, String)> {
    let mut targets: Vec<String> = Vec::new();
    for node in flow.nodes.values() {
        for (_, target) in edges(node) {
            if let Target::Flow(other, at) = target {
                let text = match at {
                    Some(at) => format!("flow {other}: {at}"),
                    None => format!("flow {other}"),
                };
                if !targets.contains(&text) {
                    targets.push(text);
                }
            }
        }
    }
    targets
        .into_iter()
        .enumerate()
        .map(|(i, text)| (format!("f{i}"), text))
        .collect()
}

fn external_id(externals: &[(String, String)], other: &str, at: Option<&str>) -> String {
    let text = match at {
        Some(at) => format!("flow {other}: {at}"),
        None => format!("flow {other}"),
    };
    externals
        .iter()
        .find(|(_, t)| *t == text)
        .map(|(id, _)| id.clone())
        .unwrap_or_default()
}

/// The flow as a Mermaid flowchart. Node `i` of the file is `n{i}`, so a caller can style one
/// (the playground highlights the current node) with `style n{i} ...`.
pub fn mermaid(flow: &Flow) -> String {
    let ids = diagram_ids(flow);
    let externals = external_targets(flow);
    let unknown = "missing".to_string();
    let mut out = String::from("flowchart TD\n");
    let _ = writeln!(out, "    start((start))");
    if let Some(first) = ids.get(flow.start.as_str()) {
        let _ = writeln!(out, "    start --> {first}");
    }
    for (name, node) in &flow.nodes {
        let label = mermaid_label(&node_label(name, node));
        let shape = match node {
            Node::Condition(_) | Node::Switch(_) => format!("{{\"{label}\"}}"),
            Node::Ask(_) | Node::Wait(_) | Node::Handoff(_) => format!("[/\"{label}\"/]"),
            Node::End(_) => format!("([\"{label}\"])"),
            Node::Plugin(_) => format!("[[\"{label}\"]]"),
            _ => format!("[\"{label}\"]"),
        };
        let _ = writeln!(out, "    {}{shape}", ids[name.as_str()]);
    }
    for (id, text) in &externals {
        let _ = writeln!(out, "    {id}>\"{}\"]", mermaid_label(text));
    }
    let mut missing = false;
    for (name, node) in &flow.nodes {
        for (label, target) in edges(node) {
            let label = mermaid_label(&label);
            let from = &ids[name.as_str()];
            match target {
                Target::Node(to) => {
                    let to = ids.get(to).unwrap_or_else(|| {
                        missing = true;
                        &unknown
                    });
                    let _ = writeln!(out, "    {from} -->|\"{label}\"| {to}");
                }
                Target::Flow(other, at) => {
                    let to = external_id(&externals, other, at);
                    let _ = writeln!(out, "    {from} -.->|\"{label}\"| {to}");
                }
            }
        }
    }
    if missing {
        let _ = writeln!(out, "    missing[\"unknown node\"]");
    }
    for (i, (name, intent)) in flow.intents.iter().enumerate() {
        if let Some(to) = intent.goto.as_deref().and_then(|g| ids.get(g)) {
            let _ = writeln!(
                out,
                "    i{i}([\"intent: {}\"]) -.-> {to}",
                mermaid_label(name)
            );
        }
    }
    out
}

/// The flow as a Graphviz DOT digraph.
pub fn dot(flow: &Flow) -> String {
    let ids = diagram_ids(flow);
    let externals = external_targets(flow);
    let q = |text: &str| {
        format!(
            "\"{}\"",
            text.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
        )
    };
    let mut out = String::new();
    let _ = writeln!(out, "digraph {} {{", q(&flow.id));
    let _ = writeln!(
        out,
        "    rankdir=TB;\n    node [shape=box, fontname=\"sans-serif\"];"
    );
    let _ = writeln!(out, "    start [shape=circle, label=\"start\"];");
    if let Some(first) = ids.get(flow.start.as_str()) {
        let _ = writeln!(out, "    start -> {first};");
    }
    for (name, node) in &flow.nodes {
        let shape = match node {
            Node::Condition(_) | Node::Switch(_) => "diamond",
            Node::Ask(_) | Node::Wait(_) | Node::Handoff(_) => "parallelogram",
            Node::End(_) => "doublecircle",
            Node::Plugin(_) => "component",
            _ => "box",
        };
        let _ = writeln!(
            out,
            "    {} [label={}, shape={shape}];",
            ids[name.as_str()],
            q(&node_label(name, node))
        );
    }
    for (id, text) in &externals {
        let _ = writeln!(out, "    {id} [label={}, shape=cds];", q(text));
    }
    let mut missing = false;
    for (name, node) in &flow.nodes {
        for (label, target) in edges(node) {
            let from = &ids[name.as_str()];
            match target {
                Target::Node(to) => {
                    let to = match ids.get(to) {
                        Some(to) => to.clone(),
                        None => {
                            missing = true;
                            "missing".to_string()
                        }
                    };
                    let _ = writeln!(out, "    {from} -> {to} [label={}];", q(&label));
                }
                Target::Flow(other, at) => {
                    let to = external_id(&externals, other, at);
                    let _ = writeln!(
                        out,
                        "    {from} -> {to} [label={}, style=dashed];",
                        q(&label)
                    );
                }
            }
        }
    }
    if missing {
        let _ = writeln!(out, "    missing [label=\"unknown node\", shape=octagon];");
    }
    for (i, (name, intent)) in flow.intents.iter().enumerate() {
        if let Some(to) = intent.goto.as_deref().and_then(|g| ids.get(g)) {
            let _ = writeln!(
                out,
                "    i{i} [label={}, shape=oval, style=dashed];",
                q(&format!("intent: {name}"))
            );
            let _ = writeln!(out, "    i{i} -> {to} [style=dotted];");
        }
    }
    out.push_str("}\n");
    out
}
